/**
 * Admin API for approvals, under `/admin/v1` (docs/reference.md "Admin API"):
 * - `GET approvals?status=pending&tenant=&limit=` (admin, approver): an
 *   approver sees only its groups' requests; a tenant-scoped token only its
 *   tenant; each with `policy_reason`, the asking policy's `@reason`;
 * - `GET approvals/{id}` (admin, approver), with each notifier delivery and
 *   `policy_reason` (the console's one-request page, `/console/approvals/{id}`);
 * - parameters are shown masked as the notifiers mask them: secret-looking
 *   names, and what the bundle's policies redact for the tool;
 * - `POST approvals/{id}/approve|deny` `{"reason"}` (admin, approver): a
 *   console session decides `via: console`, a bearer token `via: api`;
 * - `POST approvals` (gateway, admin): opens a request for an
 *   `approval_needed` decision → 201 (or 200 when the same open request is
 *   returned) `{"id","status","status_url","expires_at","reused","note"}`;
 *   429 when a cap is reached, with why.
 */
import type { FastifyInstance } from 'fastify'
import { AegisError } from '../../errors.js'
import { assertTenantAccess, installAdminGuard, type AdminPrincipal } from '../../http/admin-auth.js'
import type { Approval, ApprovalStatus } from '../../store/types.js'
import type { ControlPlaneDeps } from '../deps.js'
import { approvalJson } from '../approvals/wire.js'
import { approvalServiceFor } from '../approvals/registry.js'
import type { ApprovalRequestBinding } from '../approvals/service.js'
import { TAGS, allow, params, query, strArray } from './schemas.js'
import { analyzeBundle, type ActionScope } from '../../policy/cedar/analyze.js'
import { inActionGroup } from '../../policy/cedar/schema.js'

const STATUSES: readonly ApprovalStatus[] = ['pending', 'approved', 'denied', 'expired']

const ListQuery = query({
  status: { type: 'string', enum: STATUSES },
  tenant: { type: 'string' },
  limit: { type: 'string', pattern: '^\\d{1,4}$', description: '1 to 500 (default 100)' },
})
const IdParams = params({ id: { type: 'string' } })
const DecisionBody = { type: 'object', properties: { reason: { type: ['string', 'null'] } } }
// Field types only: what each value must be (tool and group names, the request binding) is the approval service's rule (approvals/service.ts).
const OpenBody = {
  type: 'object',
  required: ['tenant'],
  properties: {
    tenant: { type: 'string' },
    agent_id: { type: 'string' },
    client_id: { type: ['string', 'null'] },
    tool: { type: 'string' },
    params: { type: ['object', 'null'] },
    resource: { type: ['string', 'null'] },
    policy_id: { type: ['string', 'null'] },
    policy_version: { type: 'string' },
    group: { type: 'string' },
    require_console: { type: ['boolean', 'null'] },
    mask: strArray(100, { type: 'string', maxLength: 500 }),
    request: { type: ['object', 'null'], description: '{method, path, query, body_sha256?} of a proxied request the override is bound to' },
  },
}
/** Bundles whose `@reason` annotations are kept (bundles never change once stored, so entries never go stale). */
const MAX_REASON_BUNDLES = 256

/** What the approval views read from a stored bundle: each policy's `@reason`, and the `/params/` redact pointers of the policies naming each tool. */
interface BundleFacts {
  reasons: Map<string, string | null>
  redacts: Array<{ scope: ActionScope; paths: string[] }>
}

/**
 * Facts of the bundle of an approval's policy version: the `@reason` of the
 * policy that asked (`policy_reason`), so an approver sees why without
 * opening the policy, and the parameters the bundle's policies redact for
 * the tool (`@sanitize("redact:/params/…")`), masked in what approvers are
 * shown as the notifiers mask them (a superset of the approved call's own
 * redact obligations, which are not stored with the request). Empty when
 * the bundle is gone.
 */
function bundleFacts(deps: ControlPlaneDeps): (tenant: string, version: string) => Promise<BundleFacts> {
  const cache = new Map<string, BundleFacts>()
  return async (tenant, version) => {
    const key = `${tenant}\n${version}`
    let facts = cache.get(key)
    if (facts === undefined) {
      facts = { reasons: new Map(), redacts: [] }
      const bundle = (await deps.store.policies.list(tenant)).find((b) => b.version === version)
      if (bundle !== undefined) {
        try {
          for (const p of analyzeBundle(bundle.cedar).policies) {
            facts.reasons.set(p.meta.id, p.meta.reason)
            const paths = p.meta.redact.filter((r) => r.startsWith('/params/'))
            if (paths.length > 0) facts.redacts.push({ scope: p.scope, paths })
          }
        } catch {
          /* a stored bundle always analyzed once; no reasons rather than a failed list */
        }
      }
      if (cache.size >= MAX_REASON_BUNDLES) cache.delete(cache.keys().next().value!)
      cache.set(key, facts)
    }
    return facts
  }
}

/** The `/params/` pointers the bundle's policies redact for `tool` (policies on every action, on the tool, or on a group holding it). */
function redactPointers(facts: BundleFacts, tool: string): string[] {
  const out = new Set<string>()
  for (const r of facts.redacts) {
    const applies = r.scope.kind === 'all' || r.scope.tools.includes(tool) || r.scope.groups.some((g) => g === '*' || inActionGroup(tool, g))
    if (applies) for (const p of r.paths) out.add(p)
  }
  return [...out]
}

function principal(p: AdminPrincipal | undefined): AdminPrincipal {
  if (!p) throw new AegisError('unauthorized', 'a valid admin bearer token is required')
  return p
}

/** Admin route plugin (registered by control-plane/app.ts under `/admin/v1`). */
export async function approvalRoutes(app: FastifyInstance, deps: ControlPlaneDeps): Promise<void> {
  installAdminGuard(app, deps.store, deps.sessions) // no-op when the scope it is registered in has it
  const service = approvalServiceFor(deps)
  app.addHook('onClose', async () => {
    await service.close()
  })
  const readers = allow(['admin', 'approver'])
  const tags = [TAGS.approvals]
  const factsOf = bundleFacts(deps)
  /** The approval as approvers see it: parameters masked as in notifications, and the asking policy's `@reason`. */
  const view = async (a: Approval): Promise<Record<string, unknown>> => {
    const facts = await factsOf(a.tenant, a.policyVersion)
    return { ...approvalJson(a, redactPointers(facts, a.tool)), policy_reason: facts.reasons.get(a.policyId) ?? null }
  }

  app.get<{ Querystring: { status?: ApprovalStatus; tenant?: string; limit?: string } }>(
    '/approvals',
    { config: readers, schema: { tags, summary: "Approval requests (an approver sees its groups' only)", querystring: ListQuery } },
    async (request) => {
      const p = principal(request.adminPrincipal)
      const { status, tenant, limit } = request.query
      const n = Math.min(500, Math.max(1, limit === undefined ? 100 : Number(limit)))
      if (tenant !== undefined) assertTenantAccess(p, tenant)
      const scope = tenant ?? p.tenant ?? undefined
      const now = deps.clock.now()
      // A pending request past its expiry is expired even before the sweeper marks it.
      const rows = await deps.store.approvals.list({
        ...(scope !== undefined ? { tenant: scope } : {}),
        ...(status !== undefined ? { status: status as ApprovalStatus } : {}),
        limit: n,
      })
      const visible = rows
        .map((a) => service.effective(a))
        .filter((a) => status === undefined || a.status === status)
        .filter((a) => p.role === 'admin' || p.groups.includes(a.group))
      const approvals = await Promise.all(visible.map(view))
      return { approvals, now: Math.floor(now / 1000) }
    },
  )

  app.get<{ Params: { id: string } }>(
    '/approvals/:id',
    { config: readers, schema: { tags, summary: 'An approval request with each notifier delivery', params: IdParams } },
    async (request) => {
      const p = principal(request.adminPrincipal)
      const a = await service.get(request.params.id)
      assertTenantAccess(p, a.tenant)
      if (p.role !== 'admin' && !p.groups.includes(a.group)) throw new AegisError('forbidden', `approver is not in group ${a.group}`)
      return view(a)
    },
  )

  for (const action of ['approve', 'deny'] as const) {
    app.post<{ Params: { id: string }; Body: { reason?: string | null } }>(
      `/approvals/:id/${action}`,
      {
        config: allow(['admin', 'approver'], { optionalBody: true }),
        schema: { tags, summary: `${action === 'approve' ? 'Approve' : 'Deny'} a pending request`, params: IdParams, body: DecisionBody },
      },
      async (request) => {
        const p = principal(request.adminPrincipal)
        const reason = request.body.reason
        const existing = await service.get(request.params.id)
        assertTenantAccess(p, existing.tenant)
        const { approval } = await service.decide(request.params.id, {
          decision: action,
          by: { kind: 'admin', principal: p },
          reason: typeof reason === 'string' ? reason : null,
          via: p.viaConsole ? 'console' : 'api',
        })
        return view(approval)
      },
    )
  }

  app.post<{ Body: Record<string, unknown> & { tenant: string } }>(
    '/approvals',
    {
      config: allow(['gateway', 'admin']),
      schema: { tags, summary: 'A gateway opens an approval request for an approval_needed decision', body: OpenBody },
    },
    async (request, reply) => {
      const p = principal(request.adminPrincipal)
      const b = request.body
      assertTenantAccess(p, b.tenant)
      const result = await service.openApproval({
        tenant: b.tenant,
        agentId: b.agent_id as string,
        clientId: (b.client_id ?? '') as string,
        tool: b.tool as string,
        params: (b.params ?? {}) as Record<string, unknown>,
        resource: (b.resource ?? null) as string | null,
        policyId: (b.policy_id ?? '') as string,
        policyVersion: b.policy_version as string,
        group: b.group as string,
        requireConsole: (b.require_console ?? false) as boolean,
        ...(b.mask !== undefined ? { mask: b.mask as string[] } : {}),
        ...(b.request !== undefined && b.request !== null ? { request: b.request as ApprovalRequestBinding } : {}),
      })
      const a = result.approval
      return reply.code(result.reused ? 200 : 201).send({
        id: a.id,
        status: a.status,
        status_url: result.statusUrl,
        expires_at: Math.floor(a.expiresAt / 1000),
        reused: result.reused,
        note: result.note,
      })
    },
  )
}
