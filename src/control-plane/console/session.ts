/**
 * Console sessions (docs/reference.md "Audit": `POST /console/login` → HttpOnly,
 * SameSite=Strict session cookie).
 *
 * Why a MAC'd cookie rather than a sessions table: every control plane
 * sharing a database already shares the KEK, so a key derived from it with
 * HKDF lets any replica check any session without writing a row per login.
 * The cookie names a random session id and the admin token it was opened
 * with; each request re-reads that admin token, so revoking (deleting) the
 * token ends its sessions at once. A stateless cookie cannot be taken back,
 * so logout records the session id in the store (`consoleLogouts`, shared by
 * every control plane on the database) until the cookie's own expiry, and
 * each request looks its id up there: a copied cookie replayed after logout
 * is refused like an expired one.
 */
import { createHmac, hkdfSync, randomBytes } from 'node:crypto'
import type { FastifyRequest } from 'fastify'
import { AegisError } from '../../errors.js'
import type { SessionResolver } from '../../http/admin-auth.js'
import type { Clock } from '../../lib/clock.js'
import { constantTimeEqual } from '../../lib/hash.js'
import type { AdminToken, Store } from '../../store/types.js'

/** Name of the session cookie. */
export const SESSION_COOKIE = 'aegis_session'
/** Header carrying the CSRF token on cookie-authenticated state-changing requests. */
export const CSRF_HEADER = 'x-aegis-csrf'

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS'])
const COOKIE_RE = /^v1\.([A-Za-z0-9_-]{1,512})\.([A-Za-z0-9_-]{43})$/

/** What a session cookie carries (MAC'd, not secret). */
export interface SessionClaims {
  /** Random session id (128 bits, base64url). */
  sid: string
  /** Admin token id the session was opened with. */
  tid: string
  /** Epoch ms. */
  iat: number
  /** Epoch ms. */
  exp: number
}

/** A resolved console session. */
export interface ConsoleSession {
  claims: SessionClaims
  token: AdminToken
  /** Double-submit value the page sends back in `X-Aegis-CSRF`. */
  csrf: string
}

/** Derives the console's MAC key from the KEK (HKDF-SHA256, its own info label so it never doubles as another key). */
export function deriveSessionKey(kek: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', kek, Buffer.from('aegis-console'), Buffer.from('aegis console session v1'), 32))
}

/** Reads one cookie from the Cookie header; the first occurrence wins. */
export function cookieValue(request: FastifyRequest, name: string): string | undefined {
  const header = request.headers.cookie
  if (typeof header !== 'string' || header.length > 8192) return undefined
  for (const part of header.split(';')) {
    const eq = part.indexOf('=')
    if (eq < 0) continue
    if (part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim()
  }
  return undefined
}

/** The origin the browser addressed (scheme://host[:port]). */
export function requestOrigin(request: FastifyRequest): string {
  return `${request.protocol}://${request.host}`
}

/** Issues and checks console sessions for one control plane. */
export class ConsoleSessions {
  /** `ttlMs`: absolute session lifetime. */
  constructor(
    private readonly key: Buffer,
    private readonly store: Store,
    private readonly clock: Clock,
    readonly ttlMs: number,
  ) {}

  private mac(data: string): string {
    return createHmac('sha256', this.key).update(data).digest('base64url')
  }

  /** A new session for `token`: the cookie value and its claims. */
  open(token: AdminToken): { cookie: string; claims: SessionClaims; csrf: string } {
    const now = this.clock.now()
    const claims: SessionClaims = { sid: randomBytes(16).toString('base64url'), tid: token.id, iat: now, exp: now + this.ttlMs }
    const body = Buffer.from(JSON.stringify(claims)).toString('base64url')
    return { cookie: `v1.${body}.${this.mac(`session\u0000${body}`)}`, claims, csrf: this.csrfFor(claims.sid) }
  }

  /** The CSRF token bound to a session id. */
  csrfFor(sid: string): string {
    return this.mac(`csrf\u0000${sid}`)
  }

  /** Claims of a well-formed, authentic, unexpired cookie; null otherwise. */
  claimsOf(cookie: string | undefined): SessionClaims | null {
    if (cookie === undefined) return null
    const m = COOKIE_RE.exec(cookie)
    if (!m) return null
    if (!constantTimeEqual(m[2]!, this.mac(`session\u0000${m[1]!}`))) return null
    let c: unknown
    try {
      c = JSON.parse(Buffer.from(m[1]!, 'base64url').toString('utf8'))
    } catch {
      return null
    }
    const s = c as Partial<SessionClaims>
    if (typeof s.sid !== 'string' || typeof s.tid !== 'string' || typeof s.iat !== 'number' || typeof s.exp !== 'number') return null
    const now = this.clock.now()
    if (s.exp <= now || s.iat > now + 60_000) return null
    return s as SessionClaims
  }

  /** The live session of a request (cookie authentic, unexpired, not logged out, admin token not revoked), or null. */
  async resolve(request: FastifyRequest): Promise<ConsoleSession | null> {
    const claims = this.claimsOf(cookieValue(request, SESSION_COOKIE))
    if (claims === null) return null
    // Checked before the admin token so a replayed logged-out cookie costs one lookup.
    if (await this.store.consoleLogouts.has(claims.sid)) return null
    const token = await this.store.adminTokens.get(claims.tid)
    if (token === null || token.revokedAt !== null || token.role === 'gateway') return null
    return { claims, token, csrf: this.csrfFor(claims.sid) }
  }

  /**
   * Ends a session on every control plane sharing the store. Rejects when
   * the store cannot record it: the caller must not report a logout that
   * did not happen. Expired records are purged here rather than by a timer,
   * since logouts are rare and each purge is an index range delete.
   */
  async end(session: ConsoleSession): Promise<void> {
    await this.store.consoleLogouts.add(session.claims.sid, session.claims.exp)
    await this.store.consoleLogouts.purgeExpired(this.clock.now()).catch(() => {})
  }

  /**
   * Throws 403 unless a cookie-authenticated state-changing request carries
   * the session's CSRF token and, when the browser sent one, a same-origin
   * `Origin`. SameSite=Strict already keeps the cookie off cross-site
   * requests; this is the second line.
   */
  checkCsrf(request: FastifyRequest, session: ConsoleSession): void {
    if (SAFE_METHODS.has(request.method)) return
    const origin = request.headers.origin
    if (origin !== undefined && origin !== requestOrigin(request)) throw new AegisError('forbidden', 'cross-origin request refused')
    const sent = request.headers[CSRF_HEADER]
    if (typeof sent !== 'string' || !constantTimeEqual(sent, session.csrf)) throw new AegisError('forbidden', `missing or wrong ${CSRF_HEADER} header`)
  }

  /** The resolver admin endpoints use: session cookie → admin token, CSRF-checked. */
  resolver(): SessionResolver {
    return async (request) => {
      const s = await this.resolve(request)
      if (s === null) return null
      this.checkCsrf(request, s)
      return s.token
    }
  }
}
