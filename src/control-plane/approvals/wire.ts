/** Admin API wire form of approval requests (snake_case, epoch seconds). */
import type { Approval } from '../../store/types.js'
import { maskParams } from './mask.js'

/** The forwarded request a reverse-proxy approval binds, or null. */
function requestOf(a: Approval): unknown {
  if (a.requestCanonical === null) return null
  try {
    return JSON.parse(a.requestCanonical)
  } catch {
    return null
  }
}

/**
 * An approval request as the admin API shows it. Parameters are shown with
 * secret-looking fields and `maskPaths` (`/params/…` pointers) masked (the request binds the full parameters by
 * `params_hash`); deliveries show every notifier attempt.
 */
export function approvalJson(a: Approval, maskPaths: readonly string[] = []): Record<string, unknown> {
  let params: unknown
  try {
    params = maskParams(JSON.parse(a.paramsCanonical) as Record<string, unknown>, maskPaths)
  } catch {
    params = null
  }
  const s = (ms: number | null) => (ms === null ? null : Math.floor(ms / 1000))
  return {
    id: a.id,
    tenant: a.tenant,
    agent_id: a.agentId,
    tool: a.tool,
    params,
    params_hash: a.paramsHash,
    resource: a.resource,
    request: requestOf(a),
    policy_id: a.policyId,
    policy_version: a.policyVersion,
    group: a.group,
    require_console: a.requireConsole,
    status: a.status,
    created_at: s(a.createdAt),
    expires_at: s(a.expiresAt),
    decided_at: s(a.decidedAt),
    decided_by: a.decidedBy,
    reason: a.reason,
    deliveries: a.deliveries.map((d) => ({
      notifier: d.notifier,
      status: d.status,
      attempts: d.attempts,
      last_error: d.lastError,
      updated_at: s(d.updatedAt),
    })),
  }
}
