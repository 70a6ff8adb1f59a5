/**
 * The admin console (docs/reference.md "Audit"), served by the control plane at
 * `/console`: static pages from `console/` at the package root (plain
 * HTML/CSS/JS, no build step) that call the admin API with the session
 * cookie, plus login, logout and the session's CSRF token.
 */
import { existsSync, readFileSync } from 'node:fs'
import { MemoryRateLimiter } from '../token/rate-limit.js'
import { fileURLToPath } from 'node:url'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { AegisConfig } from '../../config/schema.js'
import type { ControlPlaneDeps } from '../deps.js'
import { AegisError, NotFound } from '../../errors.js'
import type { Clock } from '../../lib/clock.js'
import { sha256b64url } from '../../lib/hash.js'
import { loadKek } from '../keys/kek.js'
import type { Logger } from '../../observability/logger.js'
import type { Store } from '../../store/types.js'
import { ConsoleSessions, SESSION_COOKIE, deriveSessionKey, requestOrigin } from './session.js'
import { randomBytes } from 'node:crypto'

export { ConsoleSessions, SESSION_COOKIE, CSRF_HEADER, deriveSessionKey, type ConsoleSession, type SessionClaims } from './session.js'

const ADMIN_TOKEN_RE = /^[A-Za-z0-9._~+/=-]{1,512}$/

/** The console's static files: name → content type. Anything else is 404 (no path from the URL ever reaches the file system). */
const FILES: Record<string, string> = {
  'index.html': 'text/html; charset=utf-8',
  'app.js': 'text/javascript; charset=utf-8',
  'charts.js': 'text/javascript; charset=utf-8',
  'style.css': 'text/css; charset=utf-8',
  'approval.html': 'text/html; charset=utf-8',
  'approval.js': 'text/javascript; charset=utf-8',
}

/** Response headers of every console page and console endpoint. */
export const CONSOLE_SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy':
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; " +
    "form-action 'self'; frame-ancestors 'none'",
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  // same-origin, not no-referrer: under no-referrer Chromium sends `Origin: null` on same-origin POSTs, which the Origin check must refuse.
  'referrer-policy': 'same-origin',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
  'cache-control': 'no-store',
}

/** Where `console/` lives: at the package root, three levels above src/control-plane/console (four above dist/src/…) when built. */
function consoleDir(): string {
  for (const rel of ['../../../console/', '../../../../console/']) {
    const dir = fileURLToPath(new URL(rel, import.meta.url))
    if (existsSync(`${dir}index.html`)) return dir
  }
  throw new Error('console/ static files not found next to the aegis package')
}

/**
 * Builds the session checker of one control plane. The MAC key comes from
 * the KEK (so every control plane sharing the database accepts every
 * session); without a loadable KEK (a KeyManager passed in by a test or an
 * embedder) a random per-process key is used and a warning says so.
 */
export async function createConsoleSessions(config: AegisConfig, store: Store, clock: Clock, logger: Logger, kek?: Buffer): Promise<ConsoleSessions> {
  let key: Buffer
  try {
    key = deriveSessionKey(kek ?? (await loadKek(config, { createIfMissing: false })))
  } catch {
    logger.warn('console sessions use a per-process key (no KEK readable here): they are not shared between control planes')
    key = randomBytes(32)
  }
  return new ConsoleSessions(key, store, clock, config.console.sessionTtlSeconds * 1000)
}

function cookieHeader(request: FastifyRequest, config: AegisConfig, value: string, maxAgeSeconds: number): string {
  const secure = request.protocol === 'https' || config.issuer.startsWith('https://')
  return `${SESSION_COOKIE}=${value}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${maxAgeSeconds}${secure ? '; Secure' : ''}`
}

function sameOriginOrAbsent(request: FastifyRequest): void {
  const origin = request.headers.origin
  if (origin !== undefined && origin !== requestOrigin(request)) throw new AegisError('forbidden', 'cross-origin request refused')
}

/**
 * Registers `/console` (pages; `/console/approvals/{id}` is one approval
 * request, decided in one click), `POST /console/login` (form or JSON `token`
 * = an admin or approver token → session cookie; a form post is redirected
 * to the console, a JSON post answered `{"csrf","tenant","role","expires_at"}`),
 * `POST /console/logout` (ends the session on every control plane and
 * clears the cookie; needs the CSRF header) and
 * `GET /console/session` (who is logged in, and the CSRF token the page
 * sends back in `X-Aegis-CSRF`). Every answer carries the console's
 * security headers.
 */
/** Console logins per client address per rate-limit window. */
const MAX_LOGINS_PER_WINDOW = 30

export async function consoleRoutes(app: FastifyInstance, deps: ControlPlaneDeps, sessions: ConsoleSessions): Promise<void> {
  const dir = consoleDir()
  const files = new Map<string, { body: Buffer; type: string }>()
  for (const [name, type] of Object.entries(FILES)) files.set(name, { body: readFileSync(dir + name), type })

  await app.register(async (scope) => {
    scope.addHook('onSend', async (_request, reply, payload) => {
      for (const [k, v] of Object.entries(CONSOLE_SECURITY_HEADERS)) reply.header(k, v)
      return payload
    })

    const sendFile = (name: string, reply: FastifyReply): FastifyReply => {
      const f = files.get(name)
      if (!f) throw new NotFound('no such console file')
      return reply.type(f.type).send(f.body)
    }
    scope.get('/console', async (_request, reply) => reply.redirect('/console/', 302))
    scope.get('/console/', async (_request, reply) => sendFile('index.html', reply))
    // One approval request on a page of its own: the URL MCP clients show (URL-mode elicitation) and notifications link to.
    scope.get('/console/approvals/:id', async (_request, reply) => sendFile('approval.html', reply))
    scope.get<{ Params: { file: string } }>('/console/static/:file', async (request, reply) => sendFile(request.params.file, reply))

    // Login attempts are limited per client address: admin tokens are
    // high-entropy, but every failure writes an audit event, so an
    // unauthenticated caller must not be able to flood the audit log.
    const loginAttempts = new MemoryRateLimiter(deps.config.rateLimit.windowSeconds * 1000, () => deps.clock.now())
    scope.post('/console/login', async (request, reply) => {
      sameOriginOrAbsent(request)
      const verdict = loginAttempts.hit(`ip:${request.ip}`, MAX_LOGINS_PER_WINDOW)
      if (!verdict.ok) {
        throw new AegisError('rate_limited', 'too many console login attempts from this address', { headers: { 'retry-after': String(verdict.retryAfter) } })
      }
      const form = (request.headers['content-type'] ?? '').startsWith('application/x-www-form-urlencoded')
      const body = request.body
      const raw = body !== null && typeof body === 'object' && !Array.isArray(body) ? (body as Record<string, unknown>).token : undefined
      const token = typeof raw === 'string' && ADMIN_TOKEN_RE.test(raw) ? await deps.store.adminTokens.getByHash(sha256b64url(raw)) : null
      if (token === null || token.revokedAt !== null || token.role === 'gateway') {
        await deps.audit
          .append({ type: 'auth.failed', tenant: null, actor: 'console', subject: 'console.login', data: { reason: 'invalid_admin_token' } })
          .catch(() => {})
        if (form) return reply.redirect('/console/?login=failed', 303)
        throw new AegisError('unauthorized', 'a valid admin token is required')
      }
      const s = sessions.open(token)
      await deps.audit.append({
        type: 'admin.console_login',
        tenant: token.tenant,
        actor: `console:${token.id}`,
        subject: token.id,
        data: { role: token.role },
      })
      reply.header('set-cookie', cookieHeader(request, deps.config, s.cookie, Math.floor(sessions.ttlMs / 1000)))
      if (form) return reply.redirect('/console/', 303)
      return { csrf: s.csrf, tenant: token.tenant, role: token.role, expires_at: Math.floor(s.claims.exp / 1000) }
    })

    scope.post('/console/logout', async (request, reply) => {
      const s = await sessions.resolve(request)
      if (s !== null) sessions.checkCsrf(request, s)
      // Set before recording the logout: should the store fail (503), the
      // browser still drops the cookie, and the error says the server-side end did not happen.
      reply.header('set-cookie', cookieHeader(request, deps.config, '', 0))
      if (s !== null) {
        await sessions.end(s)
        await deps.audit.append({ type: 'admin.console_logout', tenant: s.token.tenant, actor: `console:${s.token.id}`, subject: s.token.id, data: {} })
      }
      return reply.code(204).send()
    })

    scope.get('/console/session', async (request) => {
      const s = await sessions.resolve(request)
      if (s === null) throw new AegisError('unauthorized', 'not logged in')
      return {
        csrf: s.csrf,
        tenant: s.token.tenant,
        role: s.token.role,
        name: s.token.name,
        expires_at: Math.floor(s.claims.exp / 1000),
        issuer: deps.config.issuer,
        keys: { rotation_interval_seconds: deps.config.keys.rotationIntervalSeconds, pre_publish_seconds: deps.config.keys.prePublishSeconds },
        gateway_shadow: deps.config.gateway.shadow,
      }
    })
  })
}
