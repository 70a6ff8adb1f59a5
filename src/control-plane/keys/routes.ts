import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { AegisError } from '../../errors.js'
import { requireRole } from '../../http/admin-auth.js'
import type { ControlPlaneDeps } from '../deps.js'
import { recordRevocation, revocationExpiry } from '../revocation/service.js'
import type { PublicKeyInfo } from './manager.js'

/** Admin-API (snake_case) view of a key; times in epoch ms. Never private material. */
export function keyToWire(k: PublicKeyInfo): Record<string, unknown> {
  return {
    kid: k.kid,
    alg: k.alg,
    state: k.state,
    revoked: k.revoked,
    public_jwk: k.publicJwk,
    created_at: k.createdAt,
    activates_at: k.activatesAt,
    deactivated_at: k.deactivatedAt,
    retires_at: k.retiresAt,
  }
}

/** RFC 9110 §13.1.2: If-None-Match uses the weak comparison, `*` matches any. */
function etagMatches(header: string | undefined, etag: string): boolean {
  if (!header) return false
  const bare = etag.replace(/^W\//, '')
  return header.split(',').some((t) => {
    const tag = t.trim()
    return tag === '*' || tag.replace(/^W\//, '') === bare
  })
}

function parseEmergency(q: unknown): boolean {
  const v = (q as Record<string, unknown> | undefined)?.emergency
  if (v === undefined || v === 'false' || v === '0') return false
  if (v === 'true' || v === '1' || v === '') return true
  throw new AegisError('invalid_request', 'emergency must be true or false')
}

/**
 * JWKS and key administration:
 * - `GET /.well-known/jwks.json` (RFC 7517): strong ETag, 304 on
 *   If-None-Match, `Cache-Control: public, max-age=<jwks.maxAgeSeconds>`;
 * - `GET /admin/v1/keys`, `POST /admin/v1/keys/rotate[?emergency=true]`
 *   (global admin tokens only).
 * Paths are absolute: register this plugin without a prefix.
 */
export async function keyRoutes(app: FastifyInstance, deps: ControlPlaneDeps): Promise<void> {
  const { keys, config } = deps
  const cacheControl = `public, max-age=${config.jwks.maxAgeSeconds}`

  app.get('/.well-known/jwks.json', async (request: FastifyRequest, reply: FastifyReply) => {
    const etag = keys.jwksEtag()
    reply.header('cache-control', cacheControl).header('etag', etag)
    if (etagMatches(request.headers['if-none-match'], etag)) return reply.code(304).send()
    return reply.type('application/jwk-set+json').send(keys.jwksBody())
  })

  const adminOnly = requireRole(deps.store, ['admin'], deps.sessions)
  const globalAdmin = async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    await adminOnly(request, reply)
    if (request.adminPrincipal?.tenant !== null) throw new AegisError('forbidden', 'keys are managed by global admin tokens only')
  }

  app.get('/admin/v1/keys', { preHandler: globalAdmin }, async (_request, reply) => {
    reply.header('cache-control', 'no-store')
    return { keys: keys.list().map(keyToWire), current: keys.currentKid() }
  })

  app.post('/admin/v1/keys/rotate', { preHandler: globalAdmin }, async (request, reply) => {
    const emergency = parseEmergency(request.query)
    const actor = request.adminPrincipal!.actor
    const result = await keys.rotate({ emergency, actor })
    if (result.revoked) {
      // Gateways drop the old kid at once, not when their JWKS cache expires.
      const now = deps.clock.now()
      await recordRevocation(deps, {
        type: 'kid', value: result.revoked, tenant: null, agentId: null, reason: 'emergency key rotation',
        expiresAt: revocationExpiry(deps, 'kid', result.revoked, now),
      }, { actor, via: 'admin' })
    }
    reply.header('cache-control', 'no-store')
    return { current: result.current, next: result.next, revoked: result.revoked, keys: keys.list().map(keyToWire) }
  })
}
