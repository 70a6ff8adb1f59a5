import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { installAdminGuard } from '../../http/admin-auth.js'
import { TAGS, allow, query } from '../admin/schemas.js'
import type { ControlPlaneDeps } from '../deps.js'
import { recordRevocation, revocationExpiry } from '../revocation/service.js'
import type { PublicKeyInfo } from './manager.js'
import { epochSeconds, epochSecondsOrNull } from '../../lib/clock.js'

/** Admin-API (snake_case) view of a key; times in epoch seconds. Never private material. */
export function keyToWire(k: PublicKeyInfo): Record<string, unknown> {
  return {
    kid: k.kid,
    alg: k.alg,
    state: k.state,
    revoked: k.revoked,
    public_jwk: k.publicJwk,
    created_at: epochSeconds(k.createdAt),
    activates_at: epochSeconds(k.activatesAt),
    deactivated_at: epochSecondsOrNull(k.deactivatedAt),
    retires_at: epochSecondsOrNull(k.retiresAt),
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

const RotateQuery = query({
  emergency: { type: 'string', enum: ['true', 'false', '1', '0', ''], description: 'true: promote a fresh key at once and revoke the current kid' },
})

/**
 * JWKS and key administration:
 * - `GET /.well-known/jwks.json` (RFC 7517): strong ETag, 304 on
 *   If-None-Match, `Cache-Control: public, max-age=<jwks.maxAgeSeconds>`;
 * - `GET /admin/v1/keys`, `POST /admin/v1/keys/rotate[?emergency=true]`
 *   (global admin tokens only).
 * Register this plugin without a prefix: the admin routes open their own
 * `/admin/v1` scope.
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

  await app.register(
    async (admin) => {
      installAdminGuard(admin, deps.store, deps.sessions)
      const globalAdmin = allow(['admin'], { globalOnly: 'keys are managed by global admin tokens only' })

      admin.get(
        '/keys',
        { config: globalAdmin, schema: { tags: [TAGS.keys], summary: 'Signing keys and their states (global admin)' } },
        async (_request, reply) => {
          reply.header('cache-control', 'no-store')
          return { keys: keys.list().map(keyToWire), current: keys.currentKid() }
        },
      )

      admin.post<{ Querystring: { emergency?: string } }>(
        '/keys/rotate',
        { config: globalAdmin, schema: { tags: [TAGS.keys], summary: 'Rotate the signing key (global admin)', querystring: RotateQuery } },
        async (request, reply) => {
          const e = request.query.emergency
          const emergency = e === 'true' || e === '1' || e === ''
          const actor = request.adminPrincipal!.actor
          const result = await keys.rotate({ emergency, actor })
          if (result.revoked) {
            // Gateways drop the old kid at once, not when their JWKS cache expires.
            const now = deps.clock.now()
            await recordRevocation(
              deps,
              {
                type: 'kid',
                value: result.revoked,
                tenant: null,
                agentId: null,
                reason: 'emergency key rotation',
                expiresAt: revocationExpiry(deps, 'kid', result.revoked, now),
              },
              { actor, via: 'admin' },
            )
          }
          reply.header('cache-control', 'no-store')
          return { current: result.current, next: result.next, revoked: result.revoked, keys: keys.list().map(keyToWire) }
        },
      )
    },
    { prefix: '/admin/v1' },
  )
}
