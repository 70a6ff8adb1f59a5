/**
 * Admin API for approvals, under `/admin/v1` (DESIGN.md "Admin API"):
 * - `GET approvals?status=pending&tenant=&limit=` (admin, approver): an
 *   approver sees only its groups' requests; a tenant-scoped token only its tenant;
 * - `GET approvals/{id}` (admin, approver), with each notifier delivery;
 * - `POST approvals/{id}/approve|deny` `{"reason"}` (admin, approver): a
 *   console session decides `via: console`, a bearer token `via: api`;
 * - `POST approvals` (gateway, admin): opens a request for an
 *   `approval_needed` decision → 201 (or 200 when the same open request is
 *   returned) `{"id","status","status_url","expires_at","reused","note"}`;
 *   429 when a cap is reached, with why.
 */
import type { FastifyInstance } from 'fastify'
import { AegisError } from '../../errors.js'
import { assertTenantAccess, requireRole, type AdminPrincipal } from '../../http/admin-auth.js'
import type { ApprovalStatus } from '../../store/types.js'
import type { ControlPlaneDeps } from '../deps.js'
import { approvalJson } from '../approvals/wire.js'
import { approvalServiceFor } from '../approvals/registry.js'
import type { ApprovalRequestBinding } from '../approvals/service.js'

const STATUSES: readonly ApprovalStatus[] = ['pending', 'approved', 'denied', 'expired']

function principal(p: AdminPrincipal | undefined): AdminPrincipal {
  if (!p) throw new AegisError('unauthorized', 'a valid admin bearer token is required')
  return p
}

/** Admin route plugin (registered by control-plane/app.ts under `/admin/v1`). */
export async function approvalRoutes(app: FastifyInstance, deps: ControlPlaneDeps): Promise<void> {
  const service = approvalServiceFor(deps)
  app.addHook('onClose', async () => { await service.close() })
  const readers = requireRole(deps.store, ['admin', 'approver'], deps.sessions)
  const openers = requireRole(deps.store, ['gateway', 'admin'], deps.sessions)

  app.get<{ Querystring: { status?: string; tenant?: string; limit?: string } }>('/approvals', { preHandler: readers }, async (request) => {
    const p = principal(request.adminPrincipal)
    const { status, tenant, limit } = request.query
    if (status !== undefined && !STATUSES.includes(status as ApprovalStatus)) throw new AegisError('invalid_request', `status must be one of ${STATUSES.join(', ')}`)
    if (limit !== undefined && !/^\d{1,4}$/.test(limit)) throw new AegisError('invalid_request', 'limit must be a number from 1 to 500')
    const n = Math.min(500, Math.max(1, limit === undefined ? 100 : Number(limit)))
    if (tenant !== undefined) assertTenantAccess(p, tenant)
    const scope = tenant ?? p.tenant ?? undefined
    const now = deps.clock.now()
    // A pending request past its expiry is expired even before the sweeper marks it.
    const rows = await deps.store.approvals.list({ ...(scope !== undefined ? { tenant: scope } : {}), ...(status !== undefined ? { status: status as ApprovalStatus } : {}), limit: n })
    const visible = rows
      .map((a) => service.effective(a))
      .filter((a) => status === undefined || a.status === status)
      .filter((a) => p.role === 'admin' || p.groups.includes(a.group))
    return { approvals: visible.map(approvalJson), now: Math.floor(now / 1000) }
  })

  app.get<{ Params: { id: string } }>('/approvals/:id', { preHandler: readers }, async (request) => {
    const p = principal(request.adminPrincipal)
    const a = await service.get(request.params.id)
    assertTenantAccess(p, a.tenant)
    if (p.role !== 'admin' && !p.groups.includes(a.group)) throw new AegisError('forbidden', `approver is not in group ${a.group}`)
    return approvalJson(a)
  })

  for (const action of ['approve', 'deny'] as const) {
    app.post<{ Params: { id: string }; Body: { reason?: unknown } | undefined }>(`/approvals/:id/${action}`, { preHandler: readers }, async (request) => {
      const p = principal(request.adminPrincipal)
      const body = request.body
      if (body !== undefined && (body === null || typeof body !== 'object' || Array.isArray(body))) throw new AegisError('invalid_request', 'body must be a JSON object {"reason": "..."}')
      const reason = body?.reason
      if (reason !== undefined && reason !== null && typeof reason !== 'string') throw new AegisError('invalid_request', 'reason must be a string')
      const existing = await service.get(request.params.id)
      assertTenantAccess(p, existing.tenant)
      const { approval } = await service.decide(request.params.id, { decision: action, by: { kind: 'admin', principal: p }, reason: typeof reason === 'string' ? reason : null, via: p.viaConsole ? 'console' : 'api' })
      return approvalJson(approval)
    })
  }

  app.post<{ Body: Record<string, unknown> | undefined }>('/approvals', { preHandler: openers }, async (request, reply) => {
    const p = principal(request.adminPrincipal)
    const b = request.body
    if (!b || typeof b !== 'object' || Array.isArray(b)) throw new AegisError('invalid_request', 'body must be a JSON object')
    if (typeof b.tenant !== 'string') throw new AegisError('invalid_request', 'tenant is required')
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
    return reply.code(result.reused ? 200 : 201).send({ id: a.id, status: a.status, status_url: result.statusUrl, expires_at: Math.floor(a.expiresAt / 1000), reused: result.reused, note: result.note })
  })
}
