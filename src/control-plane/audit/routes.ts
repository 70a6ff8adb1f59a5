import type { FastifyInstance } from 'fastify'
import { AegisError, InvalidRequest } from '../../errors.js'
import { installAdminGuard } from '../../http/admin-auth.js'
import type { AuditEvent, AuditQuery } from '../../store/types.js'
import type { ControlPlaneDeps } from '../deps.js'
import { TAGS, allow, query } from '../admin/schemas.js'
import { eventToWire } from './chain.js'
import { verifyAuditStore, type AuditProblem } from './verify.js'

// An exact event type: the query compares it with =, so a wildcard would silently match nothing.
const TYPE_RE = /^[A-Za-z0-9_.-]{1,100}$/
const TENANT_RE = /^[A-Za-z0-9._-]{1,128}$/
const ACTOR_RE = /^[\x21-\x7e]{1,300}$/
const CURSOR_RE = /^\d{1,15}$/
const DEFAULT_LIMIT = 100
const MAX_LIMIT = 1000

function bad(message: string): AegisError {
  return new InvalidRequest(message)
}

function one(q: Record<string, unknown>, name: string): string | undefined {
  const v = q[name]
  if (v === undefined) return undefined
  if (typeof v !== 'string') throw bad(`${name} may be given once`)
  return v
}

/** Epoch ms from `since`: an integer (epoch seconds, like every time the admin API takes) or an RFC 3339 date-time. */
function parseSince(v: string): number {
  if (/^\d{1,12}$/.test(v)) return Number(v) * 1000
  if (v.length <= 40 && /^\d{4}-\d{2}-\d{2}T/.test(v)) {
    const ms = Date.parse(v)
    if (Number.isFinite(ms)) return ms
  }
  throw bad('since must be epoch seconds or an RFC 3339 date-time')
}

/** Parses and bounds the query string of GET /admin/v1/audit. */
export function parseAuditQuery(raw: unknown): AuditQuery {
  const q = (raw ?? {}) as Record<string, unknown>
  for (const k of Object.keys(q)) {
    if (!['type', 'tenant', 'actor', 'order', 'since', 'limit', 'cursor'].includes(k)) throw bad(`unknown parameter ${k}`)
  }
  const out: AuditQuery = { limit: DEFAULT_LIMIT }
  const type = one(q, 'type')
  if (type !== undefined) {
    if (!TYPE_RE.test(type)) throw bad('type must be an event type such as token.issued')
    out.type = type
  }
  const tenant = one(q, 'tenant')
  if (tenant !== undefined) {
    if (!TENANT_RE.test(tenant)) throw bad('tenant is not a valid tenant id')
    out.tenant = tenant
  }
  const actor = one(q, 'actor')
  if (actor !== undefined) {
    if (!ACTOR_RE.test(actor)) throw bad('actor must be an actor such as agent:acme/billing-bot')
    out.actor = actor
  }
  const order = one(q, 'order')
  if (order !== undefined) {
    if (order !== 'asc' && order !== 'desc') throw bad('order must be asc or desc')
    out.order = order
  }
  const since = one(q, 'since')
  if (since !== undefined) out.since = parseSince(since)
  const limit = one(q, 'limit')
  if (limit !== undefined) {
    if (!/^\d{1,4}$/.test(limit) || Number(limit) < 1 || Number(limit) > MAX_LIMIT) throw bad(`limit must be an integer from 1 to ${MAX_LIMIT}`)
    out.limit = Number(limit)
  }
  const cursor = one(q, 'cursor')
  if (cursor !== undefined) {
    if (!CURSOR_RE.test(cursor)) throw bad('cursor must be the next_cursor of a previous page with the same filters')
    out.cursor = Number(cursor)
  }
  return out
}

/** The next_cursor of a full page: its last event's id. */
export function auditNextCursor(query: AuditQuery, events: readonly AuditEvent[]): string | null {
  const last = events[events.length - 1]
  if (events.length < query.limit || !last) return null
  return String(last.id)
}

// The shape of each parameter; the numeric range of limit and the date in since stay with parseAuditQuery, which also types the result.
const AuditQuerySchema = query(
  {
    type: { type: 'string', pattern: TYPE_RE.source, description: 'exact event type, such as token.issued' },
    tenant: { type: 'string', pattern: TENANT_RE.source },
    actor: { type: 'string', pattern: ACTOR_RE.source, description: 'exact actor, e.g. agent:acme/billing-bot' },
    order: { type: 'string', enum: ['asc', 'desc'], description: 'asc (default): oldest first; desc: newest first (the cursor then pages to older events)' },
    since: {
      type: 'string',
      maxLength: 40,
      description: 'epoch seconds or an RFC 3339 date-time (inclusive): only events whose ts_ms is at or after it, still in id order',
    },
    limit: { type: 'string', pattern: '^\\d{1,4}$', description: `1 to ${MAX_LIMIT} (default ${DEFAULT_LIMIT})` },
    cursor: { type: 'string', pattern: CURSOR_RE.source, description: 'next_cursor of the previous page (same filters)' },
  },
  false,
)

/**
 * `GET /admin/v1/audit?type=&tenant=&actor=&order=&since=&limit=&cursor=`:
 * pages through audit events in id order (`order=desc`: newest first), `{"events": [...], "next_cursor": string|null}`.
 * A tenant admin sees only its own tenant (naming another is 403). Register
 * this plugin without a prefix: it opens its own `/admin/v1` scope.
 */
export async function auditRoutes(app: FastifyInstance, deps: ControlPlaneDeps): Promise<void> {
  await app.register(async (admin) => auditAdminRoutes(admin, deps), { prefix: '/admin/v1' })
}

async function auditAdminRoutes(app: FastifyInstance, deps: ControlPlaneDeps): Promise<void> {
  installAdminGuard(app, deps.store, deps.sessions)
  app.get(
    '/audit',
    {
      config: allow(['admin']),
      schema: { tags: [TAGS.audit], summary: 'Page through audit events in id order (oldest or newest first)', querystring: AuditQuerySchema },
    },
    async (request, reply) => {
      const principal = request.adminPrincipal!
      const query = parseAuditQuery(request.query)
      if (principal.tenant !== null) {
        if (query.tenant !== undefined && query.tenant !== principal.tenant) throw new AegisError('forbidden', "outside this token's tenant")
        query.tenant = principal.tenant
      }
      const events = await deps.store.audit.query(query)
      reply.header('cache-control', 'no-store')
      return { events: events.map(eventToWire), next_cursor: auditNextCursor(query, events) }
    },
  )

  // Global admins only: the report covers every tenant's events and names chain heads.
  app.post(
    '/audit/verify',
    {
      config: allow(['admin'], { globalOnly: 'only a global admin may verify the audit chains' }),
      schema: { tags: [TAGS.audit], summary: 'Verify every audit chain and checkpoint (global admin)' },
    },
    async (_request, reply) => {
      reply.header('cache-control', 'no-store')
      const r = await verifyAuditStore(deps.store)
      const problem = (x: AuditProblem | null) => (x === null ? null : { id: x.id, chain_id: x.chainId, chain_seq: x.chainSeq, reason: x.reason })
      return {
        ok: r.ok,
        events: r.events,
        checkpoints: r.checkpoints,
        chains: r.chains.map((c) => ({
          chain_id: c.chainId,
          events: c.events,
          head_seq: c.headSeq,
          checkpoint_seq: c.checkpointSeq,
          problem: problem(c.problem),
        })),
        first_bad: problem(r.firstBad),
        problems: r.problems.map(problem),
      }
    },
  )
}
