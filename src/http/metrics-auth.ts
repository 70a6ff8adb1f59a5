/**
 * Who may scrape `GET /metrics` (control plane and gateway): anyone, or,
 * with config `metrics.token`, only a caller presenting it as a bearer
 * token. A scraper on a private network needs nothing; one reachable from
 * elsewhere sets the token (Prometheus `authorization: {credentials: …}`).
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { AegisConfig } from '../config/schema.js'
import { AegisError } from '../errors.js'
import { constantTimeEqual } from '../lib/hash.js'

/** A preHandler for `GET /metrics`; does nothing when no token is configured. */
export function metricsGuard(config: Pick<AegisConfig, 'metrics'>): (request: FastifyRequest, reply: FastifyReply) => Promise<void> {
  const expected = config.metrics.token
  return async (request) => {
    if (expected === undefined) return
    const auth = request.headers.authorization
    const presented = typeof auth === 'string' && /^bearer /i.test(auth) ? auth.slice(7).trim() : ''
    if (presented === '' || !constantTimeEqual(presented, expected)) {
      throw new AegisError('unauthorized', 'GET /metrics needs the metrics bearer token', { headers: { 'www-authenticate': 'Bearer realm="aegis-metrics"' } })
    }
  }
}
