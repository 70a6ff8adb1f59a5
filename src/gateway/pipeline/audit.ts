import { AegisError } from '../../errors.js'
import type { GatewayAuditEvent } from '../deps.js'
import type { Call } from './call.js'
import { OUTAGE_RETRY_AFTER_SECONDS, type Degradation } from './check-replay.js'
import { isReplayRefusal } from './sender-constraint.js'
import type { TokenView } from './token-view.js'

/** A gateway audit event about `call`; `view` is null before the token verified. */
export function auditEvent(
  call: Call,
  type: GatewayAuditEvent['type'],
  view: TokenView | null,
  error: string | undefined,
  enforced: boolean | undefined,
): GatewayAuditEvent {
  const f = view?.facts
  const req = call.req
  const e: GatewayAuditEvent = {
    type,
    ts: call.deps.clock.now(),
    gateway_id: call.deps.gatewayId,
    mode: req.mode,
    tenant: f?.tenant ?? null,
    agent_id: f?.agentId ?? null,
    client_id: f?.clientId ?? null,
    jti: f?.jti ?? null,
    tool: req.tool,
    resource: req.resource,
  }
  if (error !== undefined) e.error = error
  if (enforced !== undefined) e.enforced = enforced
  return e
}

/**
 * Audits a token refusal (`token.refused`, `token.replayed`) or an outage
 * met before the policy (`decision.unavailable`, with `Retry-After`) and
 * returns the error to throw.
 */
export function refused(call: Call, view: TokenView | null, err: unknown): unknown {
  const deps = call.deps
  const message = err instanceof AegisError ? err.message : 'internal error'
  if (err instanceof AegisError && err.code === 'temporarily_unavailable') {
    // Something this gateway depends on is out (keys, manifest, DPoP replay cache): an outage, not a verdict on the token.
    deps.metrics.degraded.inc({ outcome: 'closed' })
    const e = auditEvent(call, 'decision.unavailable', view, message, undefined)
    e.degraded = 'closed'
    deps.decisions.record(e)
    return err.headers['retry-after'] !== undefined
      ? err
      : new AegisError(err.code, err.message, { cause: err.cause, headers: { ...err.headers, 'retry-after': String(OUTAGE_RETRY_AFTER_SECONDS) } })
  }
  deps.decisions.record(auditEvent(call, isReplayRefusal(err) ? 'token.replayed' : 'token.refused', view, message, undefined))
  return err
}

/**
 * A call refused because a shared backend is out (docs/reference.md error table:
 * `temporarily_unavailable`): counted in `aegis_degraded_decisions_total`
 * (outcome `closed`), audited as `decision.unavailable`, answered `503`
 * with `Retry-After` so SDKs and proxies retry.
 */
export function unavailable(call: Call, degraded: Degradation): AegisError {
  call.deps.metrics.degraded.inc({ outcome: 'closed' })
  const e = auditEvent(call, 'decision.unavailable', call.view, degraded.reason, true)
  e.reasons = [degraded.reason]
  e.policy_version = call.ev.result.policyVersion
  e.risk = call.ev.result.risk
  e.degraded = 'closed'
  call.deps.decisions.record(e)
  return new AegisError('temporarily_unavailable', degraded.reason, { headers: { 'retry-after': String(OUTAGE_RETRY_AFTER_SECONDS) } })
}
