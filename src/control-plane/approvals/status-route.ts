/**
 * `GET /v1/approvals/{id}` on the control plane: the `status_url` an agent
 * polls. Authenticated with a live access token of the requesting agent
 * (verified against this control plane's own keys and its revocation list);
 * any other caller, and an unknown id, gets 404. Long-poll with `?wait=N` or
 * `Prefer: wait=N` (RFC 7240), N ≤ 30 seconds: the answer comes as soon as
 * the status changes.
 *
 * Answer: `{"id", "status", "expires_at", "override_token"?, "override_expires_at"?, "reason"?}`.
 * An approved request returns its override token on every fetch while it is
 * valid; it is the same token (same jti) each time and single-use at the
 * gateway, so fetching twice grants nothing more.
 */
import type { FastifyInstance } from 'fastify'
import { AegisError, InvalidRequest } from '../../errors.js'
import { wwwAuthenticate } from '../../http/error-handler.js'
import type { ControlPlaneDeps } from '../deps.js'
import { findRevocation } from '../revocation/service.js'
import { LocalTokenVerifier } from '../token/local-verify.js'
import { approvalServiceFor } from './registry.js'

/** Longest long-poll (seconds). */
export const MAX_WAIT_SECONDS = 30

function invalidToken(message: string): AegisError {
  return new AegisError('invalid_token', message, { headers: { 'www-authenticate': wwwAuthenticate('invalid_token', message) } })
}

/** Registers the agent-facing status endpoint at the root of the control plane. */
export async function approvalStatusRoutes(app: FastifyInstance, deps: ControlPlaneDeps): Promise<void> {
  const verifier = new LocalTokenVerifier(deps)
  app.get<{ Params: { id: string }; Querystring: { wait?: string } }>('/v1/approvals/:id', async (request, reply) => {
    const service = approvalServiceFor(deps)
    const auth = request.headers.authorization
    const m = typeof auth === 'string' ? /^(?:Bearer|DPoP) ([A-Za-z0-9._~+/=-]+)$/.exec(auth) : null
    if (!m) throw new AegisError('invalid_token', 'an access token is required', { headers: { 'www-authenticate': 'Bearer realm="aegis"' } })
    const verified = await verifier.verify(m[1]!)
    if (!verified) throw invalidToken('access token not valid')
    const c = verified.claims
    const revoked = await findRevocation(deps, { jti: c.jti, tenant: c.tenant, agentId: c.agent_id, clientId: c.client_id, kid: verified.kid, iat: c.iat })
    if (revoked) throw invalidToken('access token revoked')

    let wait = 0
    const q = request.query.wait
    const prefer = request.headers.prefer
    if (q !== undefined) {
      if (!/^\d{1,4}$/.test(q)) throw new InvalidRequest(`wait must be whole seconds from 0 to ${MAX_WAIT_SECONDS}`)
      wait = Number(q)
    } else if (typeof prefer === 'string') {
      const pm = /(?:^|[,;\s])wait=(\d{1,4})/i.exec(prefer)
      if (pm) wait = Number(pm[1])
    }
    wait = Math.min(wait, MAX_WAIT_SECONDS)
    const agent = { tenant: c.tenant, agentId: c.agent_id }
    reply.header('cache-control', 'no-store')
    if (wait === 0) return service.statusFor(request.params.id, agent)
    const ac = new AbortController()
    const onClose = () => ac.abort()
    reply.raw.once('close', onClose)
    try {
      const view = await service.waitForChange(request.params.id, agent, wait * 1000, ac.signal)
      if (prefer !== undefined) reply.header('preference-applied', `wait=${wait}`)
      return view
    } finally {
      reply.raw.off('close', onClose)
    }
  })
}
