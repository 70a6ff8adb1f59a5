/**
 * `GET /admin/v1/manifests/{capability_hash}` (role gateway or admin): the
 * capability manifest, content-addressed, so the body is its RFC 8785
 * canonical JSON (a gateway can check the hash) and cacheable for good.
 */
import type { FastifyInstance } from 'fastify'
import { InvalidRequest, NotFound } from '../../errors.js'
import { requireRole } from '../../http/admin-auth.js'
import { canonicalJson } from '../../lib/canonical-json.js'
import type { ControlPlaneDeps } from '../deps.js'

const HASH_RE = /^[A-Za-z0-9_-]{43}$/

export async function manifestRoutes(app: FastifyInstance, deps: ControlPlaneDeps): Promise<void> {
  app.get('/manifests/:hash', { preHandler: requireRole(deps.store, ['admin', 'gateway'], deps.sessions) }, async (request, reply) => {
    const hash = (request.params as { hash?: string }).hash
    if (typeof hash !== 'string' || !HASH_RE.test(hash)) throw new InvalidRequest('capability_hash must be 43 base64url characters')
    const manifest = await deps.store.manifests.get(hash)
    if (manifest === null) throw new NotFound('no manifest with this capability_hash')
    reply.header('cache-control', 'public, max-age=31536000, immutable').header('etag', `"${hash}"`)
    return reply.type('application/json').send(canonicalJson(manifest))
  })
}
