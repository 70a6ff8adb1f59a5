/**
 * The steps after the decision is known, one job each: settle the verdict
 * (the answer), sanitize the parameters, count, audit.
 */
import { applyObligations } from '../../policy/sanitize.js'
import type { Decision, Obligation, PolicyResult } from '../../policy/types.js'
import type { GatewayAuditEvent } from '../deps.js'
import type { Call } from './call.js'

const NO_OBLIGATIONS = Object.freeze([]) as unknown as Obligation[]

/** An engine that gives no approved evaluation: the override lifts the approval, with no obligations. */
function approvedWithoutEvaluation(r: PolicyResult): PolicyResult {
  return { ...r, decision: 'allow', reasons: [], obligations: [] }
}

/**
 * The verdict, as the answer: the policy's, lifted by a verified override,
 * overruled by an outage (`closed` denies with the outage as the only
 * reason; `open` adds it to the reasons).
 */
export function settleVerdict(call: Call): void {
  const ev = call.ev
  const approval = call.approval
  const degraded = call.degraded
  const overridden = approval !== null && approval.kind === 'overridden'
  // A verified override lifts the approval and nothing else: the call is
  // decided as the policy decides it approved (`context.override` true,
  // approval forbids set aside), so its sanitize obligations still apply.
  const r: PolicyResult = overridden ? (ev.result.approved ?? approvedWithoutEvaluation(ev.result)) : ev.result
  let decision: Decision = r.decision
  let reasons = overridden ? [...ev.result.reasons, ...r.reasons] : r.reasons
  let obligations = r.obligations
  if (degraded !== null) {
    if (degraded.outcome === 'closed') {
      decision = 'deny'
      reasons = [degraded.reason]
      obligations = NO_OBLIGATIONS
    } else {
      reasons = [...reasons, degraded.reason]
    }
  }
  if (overridden) reasons = [...reasons, approval.reason]
  call.result = r
  call.outcome = {
    decision,
    reasons,
    policyVersion: r.policyVersion,
    obligations,
    params: call.req.params,
    approval: approval !== null && approval.kind === 'pending' ? approval.approval : null,
    enforced: call.enforced,
    risk: r.risk,
    degraded: degraded === null ? null : degraded.outcome,
    token: call.view,
  }
}

/** The parameters with the verdict's obligations applied (what is forwarded when enforced). */
export function sanitizeParams(call: Call): void {
  const o = call.outcome
  if (o.obligations.length > 0) o.params = applyObligations(call.req, o.obligations).params
}

/** Metrics: the decision counter, the degraded counter, the pipeline's latency. */
export function countDecision(call: Call): void {
  const metrics = call.deps.metrics
  if (call.degraded !== null) metrics.degraded.inc({ outcome: call.degraded.outcome })
  metrics.decisionCount(call.outcome.decision, call.enforced).n += 1
  call.latencyMs = performance.now() - call.started
  metrics.decisionDuration.observe(call.latencyMs / 1000)
}

/** The `decision` audit event, with the candidate bundle's decision when one runs side by side. */
export function auditDecision(call: Call): void {
  const r = call.result
  const ev = call.ev
  const req = call.req
  const f = call.view.facts
  // One literal, keys in the order auditEvent() and the fields below would
  // add them: the event takes its final shape at once (no property added
  // afterwards on the hot path, so no transition and no out-of-object store).
  const e: GatewayAuditEvent = {
    type: 'decision',
    // A call decided without waiting is audited at the time its policy saw: one clock read fewer on the hot path.
    ts: call.waited ? call.deps.clock.now() : call.nowMs,
    gateway_id: call.deps.gatewayId,
    mode: req.mode,
    tenant: f.tenant ?? null,
    agent_id: f.agentId ?? null,
    client_id: f.clientId ?? null,
    jti: f.jti ?? null,
    tool: req.tool,
    resource: req.resource,
    enforced: call.enforced,
    decision: call.outcome.decision,
    reasons: call.outcome.reasons,
    policy_version: r.policyVersion,
    policy_ids: r.policyIds,
    risk: r.risk,
    latency_ms: call.latencyMs,
  }
  if (call.degraded !== null) e.degraded = call.degraded.outcome
  if (ev.candidate !== null && ev.tenantPolicy?.candidate) {
    const c = ev.candidate
    const cand: NonNullable<GatewayAuditEvent['candidate']> = { version: ev.tenantPolicy.candidate.version, decision: c.decision }
    // Not enumerable: sinks that serialize the event (log, span) never see the parameters.
    Object.defineProperty(cand, 'sample', {
      value: { activeDecision: r.decision, params: req.params, obligations: c.obligations.length === 0 ? r.obligations : [...r.obligations, ...c.obligations] },
      enumerable: false,
    })
    e.candidate = cand
  }
  call.deps.decisions.record(e, call.outcome.params)
}
