/**
 * Policy bundles per tenant (docs/reference.md "Admin API", "Policy"):
 *
 * - `POST /admin/v1/tenants/{t}/policies` `{version, cedar, mode}` → 201
 *   `{id, version, mode, status, …}`; the text is parsed and validated
 *   against the Aegis schema (400 naming line and column), a version is
 *   unique per tenant (409);
 * - `GET …/policies`, `GET …/policies/{id}` (with the Cedar text);
 * - `POST …/policies/{id}/activate`: makes it the active bundle (its version
 *   becomes the `policy_version` of tokens minted afterwards); rolling back is
 *   activating an older bundle. Promotion gate: a candidate whose diff shows
 *   changed decisions is activated only after `POST …/{id}/review`, and
 *   `?require_review=true` demands the review even when no change was seen;
 * - `POST …/policies/{id}/candidate` / `DELETE …/policies/{id}/candidate`:
 *   the side-by-side candidate gateways evaluate on live calls;
 * - `GET …/policies/{id}/diff`: per agent and tool, which decisions the
 *   candidate changes, with sanitized sample calls;
 * - `POST …/policies/{id}/review`: marks the candidate's diff reviewed;
 * - `POST /admin/v1/policy-diffs` (role gateway): gateways report decision
 *   samples `{gateway_id, samples: [{tenant, candidate_version,
 *   active_version, agent_id, tool, resource?, params?, active_decision,
 *   candidate_decision, ts?}]}` → 202 `{accepted, ignored}`.
 *
 * Diff samples are stored as `policy.diff_sampled` audit events (one per
 * tenant per report, params already sanitized), and a diff is folded from
 * them when read: every control-plane instance sees every report, nothing is
 * lost on restart, and no store table is needed.
 */
import type { FastifyInstance } from 'fastify'
import { Conflict, NotFound } from '../../errors.js'
import { assertTenantAccess, installAdminGuard } from '../../http/admin-auth.js'
import { randomId } from '../../lib/ids.js'
import type { PolicyState } from '../feed/events.js'
import type { Decision } from '../../policy/types.js'
import type { PolicyBundle, PolicyMode } from '../../store/types.js'
import { analyzeBundle, MAX_POLICY_TEXT_BYTES } from '../../policy/cedar/analyze.js'
import { applyObligations } from '../../policy/sanitize.js'
import type { ControlPlaneDeps } from '../deps.js'
import { ID_PATTERN, TAGS, allow, body, query, str, tenantIdParams, tenantParams } from './schemas.js'
import { tenantOf, tenantScope } from './tenant-scope.js'
import { auditAdmin, principal, publishChange } from './validate.js'
import { epochSeconds, epochSecondsOrNull } from '../../lib/clock.js'

const VERSION_PATTERN = '^[A-Za-z0-9._:+-]{1,64}$'
const DECISIONS: readonly Decision[] = ['allow', 'deny', 'approval_needed', 'sanitize']
const MAX_SAMPLES_PER_REPORT = 500
/** Sample calls kept per (agent, tool, from, to) in one report and in a diff. */
const SAMPLES_PER_CHANGE = 5
const MAX_SAMPLE_PARAMS_BYTES = 2048
const MAX_STRING_IN_SAMPLE = 128

/** Admin-API view of a bundle (times in epoch seconds); `cedar` only when asked. */
export function policyJson(b: PolicyBundle, withText = false): Record<string, unknown> {
  const out: Record<string, unknown> = {
    id: b.id,
    tenant: b.tenant,
    version: b.version,
    mode: b.mode,
    status: b.status,
    created_at: epochSeconds(b.createdAt),
    activated_at: epochSecondsOrNull(b.activatedAt),
    reviewed_at: epochSecondsOrNull(b.reviewedAt),
  }
  if (withText) out.cedar = b.cedar
  return out
}

/** The tenant's feed state: active and candidate bundle. */
export async function policyState(deps: ControlPlaneDeps, tenant: string): Promise<PolicyState> {
  const bundles = await deps.store.policies.list(tenant)
  const a = bundles.find((b) => b.status === 'active')
  const c = bundles.find((b) => b.status === 'candidate')
  return {
    tenant,
    active: a ? { id: a.id, version: a.version, cedar: a.cedar, mode: a.mode } : null,
    candidate: c ? { id: c.id, version: c.version, cedar: c.cedar } : null,
  }
}

async function publishPolicy(deps: ControlPlaneDeps, tenant: string): Promise<void> {
  const state = await policyState(deps, tenant)
  await publishChange(deps, () => deps.feed.publish({ kind: 'policy', policy: state }))
}

/** One changed (or unchanged) group of a diff. */
interface DiffGroup {
  agent_id: string
  tool: string
  from: Decision
  to: Decision
  count: number
  samples: Array<{ params: unknown; resource: string | null; ts: number }>
}

/** Redact pointers named by either bundle (their own sanitize directives), cached per bundle text. */
const redactCache = new Map<string, string[]>()
function redactPointers(cedar: string): string[] {
  const hit = redactCache.get(cedar)
  if (hit) return hit
  let pointers: string[] = []
  try {
    pointers = [...new Set(analyzeBundle(cedar).policies.flatMap((p) => p.meta.redact))]
  } catch {
    pointers = []
  }
  if (redactCache.size > 64) redactCache.clear()
  redactCache.set(cedar, pointers)
  return pointers
}

/** Shortens long strings so a sample never carries a whole document or secret-sized blob. */
function truncateStrings(v: unknown, depth = 0): unknown {
  if (typeof v === 'string') return v.length > MAX_STRING_IN_SAMPLE ? `${v.slice(0, 32)}…(${v.length} chars)` : v
  if (depth > 16 || v === null || typeof v !== 'object') return v
  if (Array.isArray(v)) return v.slice(0, 20).map((e) => truncateStrings(e, depth + 1))
  const out: Record<string, unknown> = {}
  for (const [k, e] of Object.entries(v as Record<string, unknown>).slice(0, 50)) {
    Object.defineProperty(out, k, { value: truncateStrings(e, depth + 1), enumerable: true, writable: true, configurable: true })
  }
  return out
}

/** A sample call as stored: the bundles' own redactions applied, long strings cut, size bounded. */
export function sanitizeSample(params: Record<string, unknown>, pointers: string[]): unknown {
  const redacted = applyObligations(
    { params },
    pointers.map((path) => ({ type: 'redact' as const, path })),
  ).params
  const out = truncateStrings(redacted)
  return JSON.stringify(out).length > MAX_SAMPLE_PARAMS_BYTES ? { _truncated: true } : out
}

interface Sample {
  tenant: string
  candidateVersion: string
  agentId: string
  tool: string
  resource: string | null
  params: Record<string, unknown> | null
  from: Decision
  to: Decision
  ts: number
}

/** A sample as the schema lets it through. */
interface SampleBody {
  tenant: string
  candidate_version: string
  active_version?: unknown
  agent_id: string
  tool: string
  resource?: string | null
  params?: Record<string, unknown> | null
  active_decision: Decision
  candidate_decision: Decision
  ts?: unknown
}

const SampleSchema = body(
  {
    tenant: str(64, ID_PATTERN),
    candidate_version: str(64, VERSION_PATTERN),
    active_version: {},
    agent_id: str(64, ID_PATTERN),
    tool: str(128),
    resource: { ...str(512), type: ['string', 'null'] },
    params: { type: ['object', 'null'] },
    active_decision: { type: 'string', enum: DECISIONS },
    candidate_decision: { type: 'string', enum: DECISIONS },
    ts: { description: 'epoch ms; anything but a positive integer reads as the time of the report' },
  },
  ['tenant', 'candidate_version', 'agent_id', 'tool', 'active_decision', 'candidate_decision'],
)
const DiffReportBody = body(
  { gateway_id: str(128, '^[A-Za-z0-9._:-]{1,128}$'), samples: { type: 'array', maxItems: MAX_SAMPLES_PER_REPORT, items: SampleSchema } },
  ['gateway_id', 'samples'],
)
const PolicyBody = body(
  {
    version: str(64, VERSION_PATTERN),
    cedar: { type: 'string', description: 'the Cedar policy text' },
    mode: { type: ['string', 'null'], enum: ['enforce', 'shadow', null], description: 'default enforce' },
  },
  ['version', 'cedar'],
)
const ActivateQuery = query({ require_review: { type: 'string', enum: ['true', 'false'] } })

function toSample(s: SampleBody, now: number): Sample {
  const ts = typeof s.ts === 'number' && Number.isSafeInteger(s.ts) && s.ts > 0 ? s.ts : now
  return {
    tenant: s.tenant,
    candidateVersion: s.candidate_version,
    agentId: s.agent_id,
    tool: s.tool,
    resource: s.resource ?? null,
    params: s.params ?? null,
    from: s.active_decision,
    to: s.candidate_decision,
    ts,
  }
}

/** Folds `policy.diff_sampled` events of one candidate into per-(agent, tool, from, to) groups. */
async function foldDiff(deps: ControlPlaneDeps, tenant: string, candidateId: string): Promise<{ groups: DiffGroup[]; total: number }> {
  const byKey = new Map<string, DiffGroup>()
  let cursor: number | undefined
  let total = 0
  for (;;) {
    const page = await deps.store.audit.query({ type: 'policy.diff_sampled', tenant, limit: 1000, ...(cursor !== undefined ? { cursor } : {}) })
    for (const e of page) {
      if (e.data.candidate_id !== candidateId || !Array.isArray(e.data.groups)) continue
      for (const g of e.data.groups as DiffGroup[]) {
        const key = `${g.agent_id}\u0000${g.tool}\u0000${g.from}\u0000${g.to}`
        let agg = byKey.get(key)
        if (!agg) {
          agg = { agent_id: g.agent_id, tool: g.tool, from: g.from, to: g.to, count: 0, samples: [] }
          byKey.set(key, agg)
        }
        agg.count += g.count
        total += g.count
        for (const s of g.samples ?? []) if (agg.samples.length < SAMPLES_PER_CHANGE) agg.samples.push(s)
      }
    }
    if (page.length < 1000) break
    cursor = page[page.length - 1]!.id
  }
  const groups = [...byKey.values()].sort(
    (a, b) => a.agent_id.localeCompare(b.agent_id) || a.tool.localeCompare(b.tool) || a.from.localeCompare(b.from) || a.to.localeCompare(b.to),
  )
  return { groups, total }
}

async function bundleOr404(deps: ControlPlaneDeps, tenant: string, id: string): Promise<PolicyBundle> {
  const b = await deps.store.policies.get(tenant, id)
  if (!b) throw new NotFound(`policy bundle ${id} not found`)
  return b
}

async function diffReport(deps: ControlPlaneDeps, b: PolicyBundle): Promise<Record<string, unknown>> {
  const bundles = await deps.store.policies.list(b.tenant)
  const active = bundles.find((x) => x.status === 'active') ?? null
  const { groups, total } = await foldDiff(deps, b.tenant, b.id)
  // Samples are stored with the gateway's epoch-ms ts; the answer names the unit.
  const changes = groups.filter((g) => g.from !== g.to).map((g) => ({ ...g, samples: g.samples.map(({ ts, ...sample }) => ({ ...sample, ts_ms: ts })) }))
  const unchanged = groups.filter((g) => g.from === g.to).map((g) => ({ agent_id: g.agent_id, tool: g.tool, decision: g.from, count: g.count }))
  return {
    candidate: { id: b.id, version: b.version, status: b.status },
    active: active ? { id: active.id, version: active.version } : null,
    reviewed_at: epochSecondsOrNull(b.reviewedAt),
    samples: total,
    changed: changes.reduce((n, g) => n + g.count, 0),
    changes,
    unchanged,
  }
}

export async function policyRoutes(app: FastifyInstance, deps: ControlPlaneDeps): Promise<void> {
  installAdminGuard(app, deps.store, deps.sessions) // no-op when the scope it is registered in has it
  const ADMIN = allow(['admin'])
  // A large bundle (hundreds of policies) is bigger than the default body limit.
  const bodyLimit = Math.max(deps.config.limits.bodyBytes, MAX_POLICY_TEXT_BYTES + 64 * 1024)
  const tags = [TAGS.policies]

  await tenantScope(app, deps, async (scope) => {
    scope.post<{ Body: { version: string; cedar: string; mode?: PolicyMode | null } }>(
      '/policies',
      {
        config: allow(['admin'], { json: true }),
        bodyLimit,
        schema: { tags, summary: 'Upload a policy bundle (parsed and validated; inactive until activated)', params: tenantParams, body: PolicyBody },
      },
      async (request, reply) => {
        const p = principal(request)
        const tenant = tenantOf(request).id
        const { version, cedar } = request.body
        const mode: PolicyMode = request.body.mode ?? 'enforce'
        const analyzed = analyzeBundle(cedar) // CedarSyntaxError → 400 with line and column
        const bundle: PolicyBundle = {
          id: randomId('pol', 12),
          tenant,
          version,
          cedar,
          mode,
          status: 'inactive',
          createdAt: deps.clock.now(),
          activatedAt: null,
          reviewedAt: null,
        }
        try {
          await deps.store.policies.create(bundle)
        } catch (err) {
          if (err instanceof Conflict) throw new Conflict(`policy version ${version} already exists for tenant ${tenant}`)
          throw err
        }
        await auditAdmin(deps, p, {
          type: 'policy.created',
          tenant,
          subject: bundle.id,
          data: { version, mode, policies: analyzed.policies.length, tools: analyzed.tools },
        })
        reply.code(201).header('location', `/admin/v1/tenants/${tenant}/policies/${bundle.id}`)
        return { ...policyJson(bundle), policies: analyzed.policies.length }
      },
    )

    scope.get('/policies', { config: ADMIN, schema: { tags, summary: "List a tenant's policy bundles", params: tenantParams } }, async (request) => {
      return { policies: (await deps.store.policies.list(tenantOf(request).id)).map((b) => policyJson(b)) }
    })

    scope.get<{ Params: { id: string } }>(
      '/policies/:id',
      { config: ADMIN, schema: { tags, summary: 'A policy bundle with its Cedar text', params: tenantIdParams } },
      async (request) => {
        return policyJson(await bundleOr404(deps, tenantOf(request).id, request.params.id), true)
      },
    )

    scope.post<{ Params: { id: string }; Querystring: { require_review?: 'true' | 'false' } }>(
      '/policies/:id/activate',
      {
        config: ADMIN,
        schema: { tags, summary: 'Make a bundle the active one (rolling back = activating an older one)', params: tenantIdParams, querystring: ActivateQuery },
      },
      async (request) => {
        const p = principal(request)
        const tenant = tenantOf(request).id
        const id = request.params.id
        const requireReview = request.query.require_review === 'true'
        const b = await bundleOr404(deps, tenant, id)
        if (b.status === 'active') return policyJson(b)
        if (b.status === 'candidate' && b.reviewedAt === null) {
          const diff = requireReview ? null : await foldDiff(deps, tenant, b.id)
          const changed = diff ? diff.groups.some((g) => g.from !== g.to) : true
          if (changed)
            throw new Conflict(
              requireReview
                ? "this candidate's diff must be reviewed before activation (require_review)"
                : 'this candidate changes decisions: review its diff (POST …/review) before activating it',
            )
        }
        const previous = (await deps.store.policies.list(tenant)).find((x) => x.status === 'active') ?? null
        const activated = await deps.store.policies.activate(tenant, id, deps.clock.now())
        await auditAdmin(deps, p, {
          type: 'policy.activated',
          tenant,
          subject: id,
          data: {
            version: activated.version,
            mode: activated.mode,
            previous_id: previous?.id ?? null,
            previous_version: previous?.version ?? null,
            rollback: previous !== null && b.createdAt < previous.createdAt,
            was_candidate: b.status === 'candidate',
          },
        })
        await publishPolicy(deps, tenant)
        return policyJson(activated)
      },
    )

    scope.post<{ Params: { id: string } }>(
      '/policies/:id/candidate',
      { config: ADMIN, schema: { tags, summary: 'Make a bundle the candidate gateways evaluate side by side', params: tenantIdParams } },
      async (request) => {
        const p = principal(request)
        const tenant = tenantOf(request).id
        const id = request.params.id
        const b = await bundleOr404(deps, tenant, id)
        if (b.status === 'active') throw new Conflict('the active bundle cannot be the candidate')
        if (b.status === 'candidate') return policyJson(b)
        for (const other of await deps.store.policies.list(tenant)) {
          if (other.status === 'candidate') await deps.store.policies.update(tenant, other.id, { status: 'inactive' })
        }
        const updated = await deps.store.policies.update(tenant, id, { status: 'candidate', reviewedAt: null })
        await auditAdmin(deps, p, { type: 'policy.candidate_set', tenant, subject: id, data: { version: b.version } })
        await publishPolicy(deps, tenant)
        return policyJson(updated)
      },
    )

    scope.delete<{ Params: { id: string } }>(
      '/policies/:id/candidate',
      { config: ADMIN, schema: { tags, summary: 'Clear the candidate', params: tenantIdParams } },
      async (request) => {
        const p = principal(request)
        const tenant = tenantOf(request).id
        const id = request.params.id
        const b = await bundleOr404(deps, tenant, id)
        if (b.status !== 'candidate') throw new Conflict('this bundle is not the candidate')
        const updated = await deps.store.policies.update(tenant, id, { status: 'inactive' })
        await auditAdmin(deps, p, { type: 'policy.candidate_cleared', tenant, subject: id, data: { version: b.version } })
        await publishPolicy(deps, tenant)
        return policyJson(updated)
      },
    )

    scope.get<{ Params: { id: string } }>(
      '/policies/:id/diff',
      { config: ADMIN, schema: { tags, summary: 'Which decisions the candidate changes, per agent and tool, with sample calls', params: tenantIdParams } },
      async (request, reply) => {
        const b = await bundleOr404(deps, tenantOf(request).id, request.params.id)
        reply.header('cache-control', 'no-store')
        return diffReport(deps, b)
      },
    )

    scope.post<{ Params: { id: string } }>(
      '/policies/:id/review',
      { config: ADMIN, schema: { tags, summary: "Mark the candidate's diff reviewed", params: tenantIdParams } },
      async (request) => {
        const p = principal(request)
        const tenant = tenantOf(request).id
        const id = request.params.id
        const b = await bundleOr404(deps, tenant, id)
        if (b.status !== 'candidate') throw new Conflict("only the candidate's diff can be reviewed")
        const diff = await diffReport(deps, b)
        const updated = await deps.store.policies.update(tenant, id, { reviewedAt: deps.clock.now() })
        await auditAdmin(deps, p, { type: 'policy.reviewed', tenant, subject: id, data: { version: b.version, samples: diff.samples, changed: diff.changed } })
        return policyJson(updated)
      },
    )
  })

  app.post<{ Body: { gateway_id: string; samples: SampleBody[] } }>(
    '/policy-diffs',
    {
      config: allow(['gateway', 'admin'], { json: true }),
      schema: { tags, summary: 'Gateways report candidate-vs-active decision samples', body: DiffReportBody },
    },
    async (request, reply) => {
      const p = principal(request)
      const gatewayId = request.body.gateway_id
      const now = deps.clock.now()
      const samples = request.body.samples.map((s) => toSample(s, now))
      for (const s of samples) assertTenantAccess(p, s.tenant)
      let accepted = 0
      let ignored = 0
      const byTenant = new Map<string, Sample[]>()
      for (const s of samples) {
        const list = byTenant.get(s.tenant) ?? []
        list.push(s)
        byTenant.set(s.tenant, list)
      }
      for (const [tenant, list] of byTenant) {
        const bundles = await deps.store.policies.list(tenant)
        const candidate = bundles.find((b) => b.status === 'candidate')
        const active = bundles.find((b) => b.status === 'active')
        // Samples for a candidate that is no longer the candidate describe nothing current.
        const current = candidate ? list.filter((s) => s.candidateVersion === candidate.version) : []
        ignored += list.length - current.length
        if (!candidate || current.length === 0) continue
        const pointers = [...new Set([...redactPointers(candidate.cedar), ...(active ? redactPointers(active.cedar) : [])])]
        const groups = new Map<string, DiffGroup>()
        for (const s of current) {
          const key = `${s.agentId}\u0000${s.tool}\u0000${s.from}\u0000${s.to}`
          let g = groups.get(key)
          if (!g) {
            g = { agent_id: s.agentId, tool: s.tool, from: s.from, to: s.to, count: 0, samples: [] }
            groups.set(key, g)
          }
          g.count++
          // Only changed decisions keep sample calls: they are what a reviewer reads.
          if (s.from !== s.to && g.samples.length < SAMPLES_PER_CHANGE)
            g.samples.push({ params: s.params ? sanitizeSample(s.params, pointers) : null, resource: s.resource, ts: s.ts })
        }
        accepted += current.length
        await auditAdmin(deps, p, {
          type: 'policy.diff_sampled',
          tenant,
          subject: candidate.id,
          data: {
            candidate_id: candidate.id,
            candidate_version: candidate.version,
            active_version: active?.version ?? null,
            gateway_id: gatewayId,
            groups: [...groups.values()],
          },
        })
      }
      reply.code(202)
      return { accepted, ignored }
    },
  )
}
