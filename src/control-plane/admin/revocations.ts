/**
 * `POST /admin/v1/revocations`, `GET revocations`, `GET revocations/{seq}`
 * (with which gateways acknowledged applying it).
 */
import type { FastifyInstance } from 'fastify'
import { AegisError, InvalidRequest, NotFound } from '../../errors.js'
import { requireRole } from '../../http/admin-auth.js'
import type { ControlPlaneDeps } from '../deps.js'
import { parseRevocation } from '../revocation/validate.js'
import { recordRevocation, revocationExpiry, revocationJson } from '../revocation/service.js'
import { jsonBody, principal } from './validate.js'

export async function revocationRoutes(app: FastifyInstance, deps: ControlPlaneDeps): Promise<void> {
  const admin = requireRole(deps.store, ['admin'], deps.sessions)
  const reader = requireRole(deps.store, ['admin', 'gateway'], deps.sessions)

  app.post('/revocations', { preHandler: admin }, async (request, reply) => {
    const p = principal(request)
    const body = jsonBody(request, ['type', 'value', 'tenant', 'agent_id', 'reason'])
    const now = deps.clock.now()
    const parsed = parseRevocation(body, p, deps.config, now)
    const r = await recordRevocation(deps, { ...parsed, expiresAt: revocationExpiry(deps, parsed.type, parsed.value, now) }, { actor: p.actor, via: 'admin' })
    reply.code(201).header('location', `/admin/v1/revocations/${r.seq}`)
    return revocationJson(r)
  })

  app.get('/revocations', { preHandler: reader }, async (request) => {
    const p = principal(request)
    const list = await deps.store.revocations.listActive(deps.clock.now())
    const visible = p.tenant === null ? list : list.filter((r) => r.tenant === p.tenant)
    return { revocations: visible.map(revocationJson), last_seq: await deps.store.revocations.lastSeq() }
  })

  app.get('/revocations/:seq', { preHandler: reader }, async (request) => {
    const p = principal(request)
    const raw = (request.params as { seq?: string }).seq
    if (typeof raw !== 'string' || !/^\d{1,15}$/.test(raw)) throw new InvalidRequest('seq must be a positive integer')
    const r = await deps.store.revocations.get(Number(raw))
    if (!r) throw new NotFound(`revocation ${raw} not found`)
    if (p.tenant !== null && r.tenant !== p.tenant) throw new AegisError('forbidden', 'outside this token\'s tenant')
    const acks = await deps.store.gatewayAcks.list()
    return {
      ...revocationJson(r),
      applied_by: acks.filter((a) => a.seq >= r.seq).map((a) => a.gatewayId).sort(),
      pending: acks.filter((a) => a.seq < r.seq).map((a) => a.gatewayId).sort(),
    }
  })
}
