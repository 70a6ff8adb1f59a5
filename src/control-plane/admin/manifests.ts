/**
 * `GET /admin/v1/manifests/{capability_hash}` (role gateway or admin): the
 * capability manifest, content-addressed, so the body is its RFC 8785
 * canonical JSON (a gateway can check the hash) and cacheable for good.
 */
import type { FastifyInstance } from 'fastify'
import { NotFound } from '../../errors.js'
import { canonicalJson } from '../../lib/canonical-json.js'
import type { ControlPlaneDeps } from '../deps.js'
import { TAGS, allow, params } from './schemas.js'

const HashParams = params({ hash: { type: 'string', pattern: '^[A-Za-z0-9_-]{43}$', description: 'capability_hash: 43 base64url characters' } })

export async function manifestRoutes(app: FastifyInstance, deps: ControlPlaneDeps): Promise<void> {
  app.get<{ Params: { hash: string } }>(
    '/manifests/:hash',
    {
      config: allow(['admin', 'gateway']),
      schema: { tags: [TAGS.feed], summary: 'A capability manifest by its capability_hash (immutable)', params: HashParams },
    },
    async (request, reply) => {
      const hash = request.params.hash
      const manifest = await deps.store.manifests.get(hash)
      if (manifest === null) throw new NotFound('no manifest with this capability_hash')
      reply.header('cache-control', 'public, max-age=31536000, immutable').header('etag', `"${hash}"`)
      return reply.type('application/json').send(canonicalJson(manifest))
    },
  )
}
