/**
 * `POST /admin/v1/revocations`, `GET revocations`, `GET revocations/{seq}`
 * (with which gateways acknowledged applying it), `DELETE revocations/{seq}`
 * (lifts an agent, client or tenant entry).
 */
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { AegisError, InvalidRequest, NotFound } from '../../errors.js'
import { requireRole } from '../../http/admin-auth.js'
import type { ControlPlaneDeps } from '../deps.js'
import { parseRevocation } from '../revocation/validate.js'
import { liftRevocation, recordRevocation, revocationExpiry, revocationJson } from '../revocation/service.js'
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

  const seqParam = (request: FastifyRequest): number => {
    const raw = (request.params as { seq?: string }).seq
    if (typeof raw !== 'string' || !/^\d{1,15}$/.test(raw)) throw new InvalidRequest('seq must be a positive integer')
    return Number(raw)
  }

  // Lifting: only agent, client and tenant entries hold until lifted. A
  // tenant admin lifts its tenant's agent and client entries; a tenant-wide
  // entry needs a global admin (the tenant's own admins are what it may have
  // been aimed at). Answers the lifted entry; repeating it republishes the lift.
  app.delete('/revocations/:seq', { preHandler: admin }, async (request) => {
    const p = principal(request)
    const seq = seqParam(request)
    const r = await deps.store.revocations.get(seq)
    if (!r || (r.liftedAt === undefined && r.expiresAt <= deps.clock.now())) throw new NotFound(`revocation ${seq} is not in force`)
    if (p.tenant !== null && r.tenant !== p.tenant) throw new AegisError('forbidden', 'outside this token\'s tenant')
    if (p.tenant !== null && r.type === 'tenant') throw new AegisError('forbidden', 'lifting a tenant revocation needs a global admin token')
    const { revocation, issuedBefore } = await liftRevocation(deps, r, { actor: p.actor })
    return { ...revocationJson(revocation), issued_before_seq: issuedBefore?.seq ?? null }
  })

  app.get('/revocations/:seq', { preHandler: reader }, async (request) => {
    const p = principal(request)
    const seq = seqParam(request)
    const r = await deps.store.revocations.get(seq)
    if (!r) throw new NotFound(`revocation ${seq} not found`)
    if (p.tenant !== null && r.tenant !== p.tenant) throw new AegisError('forbidden', 'outside this token\'s tenant')
    const acks = await deps.store.gatewayAcks.list()
    return {
      ...revocationJson(r),
      applied_by: acks.filter((a) => a.seq >= r.seq).map((a) => a.gatewayId).sort(),
      pending: acks.filter((a) => a.seq < r.seq).map((a) => a.gatewayId).sort(),
    }
  })
}
