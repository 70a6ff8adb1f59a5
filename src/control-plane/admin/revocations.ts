/**
 * `POST /admin/v1/revocations`, `GET revocations`, `GET revocations/{seq}`
 * (with which gateways acknowledged applying it), `DELETE revocations/{seq}`
 * (lifts an agent, client or tenant entry).
 */
import type { FastifyInstance } from 'fastify'
import { AegisError, NotFound } from '../../errors.js'
import type { ControlPlaneDeps } from '../deps.js'
import { parseRevocation } from '../revocation/validate.js'
import { liftRevocation, recordRevocation, revocationExpiry, revocationJson } from '../revocation/service.js'
import { ID_PATTERN, TAGS, allow, body, nullableStr, params, query, str } from './schemas.js'
import { principal } from './validate.js'

// The shape of the body; which value and tenant each type needs, and what a tenant admin may revoke, is parseRevocation's (cross-field rules).
const RevocationBody = body(
  {
    type: { type: 'string', enum: ['jti', 'agent', 'client', 'tenant', 'kid', 'issued_before'] },
    value: {
      type: ['string', 'integer'],
      minLength: 1,
      maxLength: 128,
      description: 'jti, agent_id, client_id, tenant id or kid; epoch seconds for issued_before',
    },
    tenant: nullableStr(64, ID_PATTERN),
    agent_id: { ...nullableStr(64, ID_PATTERN), description: 'scopes an issued_before entry to one agent' },
    reason: { type: ['string', 'null'], maxLength: 500 },
  },
  ['type', 'value'],
)
const SeqParams = params({ seq: str(15, '^\\d{1,15}$') })
const DEFAULT_LIMIT = 1000
const MAX_LIMIT = 10_000
const ListQuery = query(
  {
    limit: { ...str(5, '^\\d{1,5}$'), description: `1 to ${MAX_LIMIT} (default ${DEFAULT_LIMIT})` },
    cursor: { ...str(15, '^\\d{1,15}$'), description: 'next_cursor of the previous page: entries after that seq' },
    tenant: { ...str(64, ID_PATTERN), description: "only this tenant's entries (a tenant admin's token: its own tenant)" },
    agent_id: {
      ...str(64, ID_PATTERN),
      description: 'only the entries naming this agent of the tenant: its agent entry and the issued_before entries scoped to it; needs a tenant',
    },
  },
  false,
)

export async function revocationRoutes(app: FastifyInstance, deps: ControlPlaneDeps): Promise<void> {
  const admin = allow(['admin'])
  const reader = allow(['admin', 'gateway'])

  app.post(
    '/revocations',
    {
      config: allow(['admin'], { json: true }),
      schema: { tags: [TAGS.revocations], summary: 'Revoke a token, agent, client, tenant, key or everything issued before a time', body: RevocationBody },
    },
    async (request, reply) => {
      const p = principal(request)
      const now = deps.clock.now()
      const parsed = parseRevocation(request.body, p, deps.config, now)
      const r = await recordRevocation(deps, { ...parsed, expiresAt: revocationExpiry(deps, parsed.type, parsed.value, now) }, { actor: p.actor, via: 'admin' })
      reply.code(201).header('location', `/admin/v1/revocations/${r.seq}`)
      return revocationJson(r)
    },
  )

  // Paged by seq: with 100,000 entries in force one answer held them all (the gateways load the paged feed snapshot instead).
  app.get<{ Querystring: { limit?: string; cursor?: string; tenant?: string; agent_id?: string } }>(
    '/revocations',
    {
      config: reader,
      schema: {
        tags: [TAGS.revocations],
        summary: "Revocations in force, in seq order; one tenant's, or those naming one of its agents (a tenant admin: its tenant)",
        querystring: ListQuery,
      },
    },
    async (request) => {
      const p = principal(request)
      const limit = request.query.limit === undefined ? DEFAULT_LIMIT : Number(request.query.limit)
      if (!(limit >= 1 && limit <= MAX_LIMIT)) throw new AegisError('invalid_request', `limit must be an integer from 1 to ${MAX_LIMIT}`)
      const after = request.query.cursor === undefined ? 0 : Number(request.query.cursor)
      const { tenant: asked, agent_id: agentId } = request.query
      if (p.tenant !== null && asked !== undefined && asked !== p.tenant) throw new AegisError('forbidden', "outside this token's tenant")
      const tenant = p.tenant ?? asked
      // Agent ids are unique within a tenant only.
      if (agentId !== undefined && tenant === undefined) throw new AegisError('invalid_request', 'agent_id needs tenant')
      const lastSeq = await deps.store.revocations.lastSeq()
      const filter = tenant === undefined ? undefined : { tenant, ...(agentId === undefined ? {} : { agentId }) }
      const page = await deps.store.revocations.listActivePage(deps.clock.now(), after, limit, filter)
      const next = page.length === limit ? String(page[page.length - 1]!.seq) : null
      return { revocations: page.map(revocationJson), last_seq: lastSeq, next_cursor: next }
    },
  )

  // Lifting: only agent, client and tenant entries hold until lifted. A
  // tenant admin lifts its tenant's agent and client entries; a tenant-wide
  // entry needs a global admin (the tenant's own admins are what it may have
  // been aimed at). Answers the lifted entry; repeating it republishes the lift.
  app.delete<{ Params: { seq: string } }>(
    '/revocations/:seq',
    { config: admin, schema: { tags: [TAGS.revocations], summary: 'Lift an agent, client or tenant revocation', params: SeqParams } },
    async (request) => {
      const p = principal(request)
      const seq = Number(request.params.seq)
      const r = await deps.store.revocations.get(seq)
      if (!r || (r.liftedAt === undefined && r.expiresAt <= deps.clock.now())) throw new NotFound(`revocation ${seq} is not in force`)
      if (p.tenant !== null && r.tenant !== p.tenant) throw new AegisError('forbidden', "outside this token's tenant")
      if (p.tenant !== null && r.type === 'tenant') throw new AegisError('forbidden', 'lifting a tenant revocation needs a global admin token')
      const { revocation, issuedBefore } = await liftRevocation(deps, r, { actor: p.actor })
      return { ...revocationJson(revocation), issued_before_seq: issuedBefore?.seq ?? null }
    },
  )

  app.get<{ Params: { seq: string } }>(
    '/revocations/:seq',
    { config: reader, schema: { tags: [TAGS.revocations], summary: 'A revocation and which gateways applied it', params: SeqParams } },
    async (request) => {
      const p = principal(request)
      const seq = Number(request.params.seq)
      const r = await deps.store.revocations.get(seq)
      if (!r) throw new NotFound(`revocation ${seq} not found`)
      if (p.tenant !== null && r.tenant !== p.tenant) throw new AegisError('forbidden', "outside this token's tenant")
      const acks = await deps.store.gatewayAcks.list()
      return {
        ...revocationJson(r),
        applied_by: acks
          .filter((a) => a.seq >= r.seq)
          .map((a) => a.gatewayId)
          .sort(),
        pending: acks
          .filter((a) => a.seq < r.seq)
          .map((a) => a.gatewayId)
          .sort(),
      }
    },
  )
}
