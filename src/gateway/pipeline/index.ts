import type { Counter } from 'prom-client'
import { AegisError } from '../../errors.js'
import { applyObligations } from '../../policy/sanitize.js'
import type { Decision, HttpCall, Obligation, PolicyResult } from '../../policy/types.js'
import type { ApprovalRef, ApprovalResolution, EntryMode, GatewayAuditEvent, GatewayDeps } from '../deps.js'
import type { VerifiedManifest } from '../manifests.js'
import { checkDenyList } from './check-deny-list.js'
import { checkReplay, assessBackends, needsReplayClaim, OUTAGE_RETRY_AFTER_SECONDS, REPLAY_CLAIM_FAILED, type Degradation } from './check-replay.js'
import { enforceSenderConstraint, isReplayRefusal, type SenderSource } from './sender-constraint.js'
import { evaluatePolicy, type Evaluation } from './evaluate-policy.js'
import { resolveApproval } from './resolve-approval.js'
import type { TokenView } from './token-view.js'
import { invalidToken, needsKeys, verifyFailure, verifyToken, viewOf } from './verify-token.js'

export type { TokenView } from './token-view.js'
export { verifyToken } from './verify-token.js'
export { checkDenyList } from './check-deny-list.js'
export { enforceSenderConstraint, authScheme, type SenderSource } from './sender-constraint.js'
export { checkReplay, assessBackends } from './check-replay.js'
export { evaluatePolicy } from './evaluate-policy.js'
export { resolveApproval, noApprovals } from './resolve-approval.js'
export { isReadAction } from './action-class.js'

/** One call to decide, whatever the entry point. */
export interface DecisionRequest {
  /** The bearer token, or undefined when none was sent. */
  token: string | undefined
  tool: string
  params: Record<string, unknown>
  resource: string | null
  /** `Aegis-Dry-Run: 1` on /v1/authorize. */
  dryRun: boolean
  /** Raw `Aegis-Override` header, handed to the approval hook only. */
  override: string | null
  clientAddress: string | null
  mode: EntryMode
  /** The HTTP request, for the sender constraint (client certificate, DPoP proof); absent = bound tokens refused. */
  sender?: SenderSource
  /** Reverse-proxy mode: the forwarded request (`context.http`), also bound by an override. */
  http?: HttpCall
}

/** The pipeline's answer (DESIGN.md `/v1/authorize` body, in camelCase). */
export interface DecisionOutcome {
  decision: Decision
  reasons: string[]
  policyVersion: string
  obligations: Obligation[]
  /** The parameters with obligations applied (what is forwarded when enforced). */
  params: Record<string, unknown>
  approval: ApprovalRef | null
  /** False in shadow mode (gateway or bundle) and for dry runs. */
  enforced: boolean
  risk: 'high' | 'normal'
  degraded: 'open' | 'closed' | null
  token: TokenView
}

const MISSING_TOKEN = new AegisError('invalid_token', 'a bearer token is required')
const REPLAYED = 'token replayed (single-use jti already used)'
const EMPTY: readonly never[] = Object.freeze([])

/** An engine that gives no approved evaluation: the override lifts the approval, with no obligations. */
function approvedWithoutEvaluation(r: PolicyResult): PolicyResult {
  return { ...r, decision: 'allow', reasons: [], obligations: [] }
}

/**
 * The decision pipeline behind every entry point (DESIGN.md "Gateway"),
 * in order, failing closed at each step: verifyToken → checkDenyList →
 * enforceSenderConstraint → evaluatePolicy → checkReplay → resolveApproval.
 * (Policy evaluation is pure, so it runs before the replay claim: that is
 * how the gateway knows which actions the policy marks high-risk.)
 *
 * `decide` stays synchronous unless something is really asynchronous: an
 * unknown `kid`, a manifest not yet held, a replay claim, an approval hook
 * that awaits. Token refusals throw (or reject with) an AegisError:
 * `invalid_token` (401) or `temporarily_unavailable` (503).
 */
export class DecisionPipeline {
  private readonly counters = new Map<string, Counter.Internal>()

  constructor(private readonly deps: GatewayDeps) {}

  decide(req: DecisionRequest): DecisionOutcome | Promise<DecisionOutcome> {
    const started = performance.now()
    let view: TokenView
    try {
      if (req.token === undefined) throw MISSING_TOKEN
      view = verifyToken(this.deps, req.token)
    } catch (err) {
      if (req.token !== undefined && needsKeys(err)) return this.verifySlowly(req, req.token, started)
      throw this.refused(req, null, verifyFailure(err))
    }
    return this.afterVerify(req, view, started)
  }

  private async verifySlowly(req: DecisionRequest, token: string, started: number): Promise<DecisionOutcome> {
    let view: TokenView
    try {
      view = viewOf(this.deps, await this.deps.verifier.verifyAsync(token))
    } catch (err) {
      throw this.refused(req, null, verifyFailure(err))
    }
    return this.afterVerify(req, view, started)
  }

  private afterVerify(req: DecisionRequest, view: TokenView, started: number): DecisionOutcome | Promise<DecisionOutcome> {
    let manifest: VerifiedManifest | undefined
    try {
      checkDenyList(this.deps, view)
      const bound = enforceSenderConstraint(this.deps, view, req.sender)
      if (bound !== undefined) return this.afterProof(req, view, bound, started)
      manifest = this.deps.manifests.get(view.capabilityHash)
    } catch (err) {
      throw this.refused(req, view, err)
    }
    if (manifest === undefined) return this.loadManifest(req, view, started)
    return this.decideWith(req, view, manifest, started)
  }

  /** A DPoP proof is checked asynchronously (signature, replay claim). */
  private async afterProof(req: DecisionRequest, view: TokenView, proof: Promise<void>, started: number): Promise<DecisionOutcome> {
    try {
      await proof
    } catch (err) {
      throw this.refused(req, view, err)
    }
    const manifest = this.deps.manifests.get(view.capabilityHash)
    if (manifest === undefined) return this.loadManifest(req, view, started)
    return this.decideWith(req, view, manifest, started)
  }

  private async loadManifest(req: DecisionRequest, view: TokenView, started: number): Promise<DecisionOutcome> {
    let manifest: VerifiedManifest
    try {
      manifest = await this.deps.manifests.load(view.capabilityHash)
    } catch (err) {
      throw this.refused(req, view, err instanceof AegisError ? err : new AegisError('temporarily_unavailable', 'capability manifest unavailable', { cause: err }))
    }
    return this.decideWith(req, view, manifest, started)
  }

  private decideWith(req: DecisionRequest, view: TokenView, manifest: VerifiedManifest, started: number): DecisionOutcome | Promise<DecisionOutcome> {
    const nowMs = this.deps.clock.now()
    const ev = evaluatePolicy(this.deps, view, manifest, req, Math.floor(nowMs / 1000))
    const enforced = !(req.dryRun || ev.shadow || this.deps.config.gateway.shadow)
    const claim = needsReplayClaim(ev.result, req.dryRun)
    const degraded = assessBackends(this.deps, req.tool, ev.result, nowMs, claim)
    if (degraded !== null && degraded.outcome === 'closed') {
      // An outage is not a policy decision: 503 + Retry-After when enforced; a dry run or shadow call reports what it would do.
      if (enforced) throw this.unavailable(req, view, ev, degraded)
      return this.finish(req, view, ev, enforced, degraded, null, started)
    }
    if (claim) return this.claimThenDecide(req, view, ev, enforced, degraded, started)
    return this.approveThenFinish(req, view, ev, enforced, degraded, started)
  }

  private async claimThenDecide(req: DecisionRequest, view: TokenView, ev: Evaluation, enforced: boolean, degraded: Degradation | null, started: number): Promise<DecisionOutcome> {
    let first: boolean
    try {
      first = await checkReplay(this.deps, view)
    } catch (err) {
      this.deps.logger.warn({ err }, 'replay cache unreachable; failing closed')
      if (enforced) throw this.unavailable(req, view, ev, REPLAY_CLAIM_FAILED)
      return this.finish(req, view, ev, enforced, REPLAY_CLAIM_FAILED, null, started)
    }
    if (!first) {
      this.deps.metrics.replayAttempts.inc()
      this.deps.decisions.record(this.event('token.replayed', req, view, REPLAYED, enforced))
      if (enforced) throw invalidToken(REPLAYED)
    }
    return this.approveThenFinish(req, view, ev, enforced, degraded, started)
  }

  private approveThenFinish(req: DecisionRequest, view: TokenView, ev: Evaluation, enforced: boolean, degraded: Degradation | null, started: number): DecisionOutcome | Promise<DecisionOutcome> {
    if (ev.result.decision !== 'approval_needed' || !enforced) return this.finish(req, view, ev, enforced, degraded, null, started)
    const res = resolveApproval(this.deps.approvals, { token: view, tool: req.tool, params: req.params, resource: req.resource, http: req.http ?? null, result: ev.result, override: req.override, mode: req.mode })
    if (res !== null && typeof (res as Promise<unknown>).then === 'function') {
      return (res as Promise<ApprovalResolution | null>).then((r) => this.finish(req, view, ev, enforced, degraded, r, started))
    }
    return this.finish(req, view, ev, enforced, degraded, res as ApprovalResolution | null, started)
  }

  private finish(req: DecisionRequest, view: TokenView, ev: Evaluation, enforced: boolean, degraded: Degradation | null, approval: ApprovalResolution | null, started: number): DecisionOutcome {
    const overridden = approval !== null && approval.kind === 'overridden'
    // A verified override lifts the approval and nothing else: the call is
    // decided as the policy decides it approved (`context.override` true,
    // approval forbids set aside), so its sanitize obligations still apply.
    const r: PolicyResult = overridden ? ev.result.approved ?? approvedWithoutEvaluation(ev.result) : ev.result
    let decision: Decision = r.decision
    let reasons = overridden ? [...ev.result.reasons, ...r.reasons] : r.reasons
    let obligations = r.obligations
    if (degraded !== null) {
      if (degraded.outcome === 'closed') {
        decision = 'deny'
        reasons = [degraded.reason]
        obligations = EMPTY as unknown as Obligation[]
      } else {
        reasons = [...reasons, degraded.reason]
      }
      this.deps.metrics.degraded.inc({ outcome: degraded.outcome })
    }
    if (overridden) reasons = [...reasons, approval.reason]
    const params = obligations.length > 0 ? applyObligations(req, obligations).params : req.params
    const outcome: DecisionOutcome = {
      decision,
      reasons,
      policyVersion: r.policyVersion,
      obligations,
      params,
      approval: approval !== null && approval.kind === 'pending' ? approval.approval : null,
      enforced,
      risk: r.risk,
      degraded: degraded === null ? null : degraded.outcome,
      token: view,
    }
    this.counter(decision, enforced).inc()
    const latencyMs = performance.now() - started
    this.deps.metrics.decisionDuration.observe(latencyMs / 1000)
    const e = this.event('decision', req, view, undefined, enforced)
    e.decision = decision
    e.reasons = reasons
    e.policy_version = r.policyVersion
    e.policy_ids = r.policyIds
    e.risk = r.risk
    e.latency_ms = latencyMs
    if (degraded !== null) e.degraded = degraded.outcome
    if (ev.candidate !== null && ev.tenantPolicy?.candidate) {
      const c = ev.candidate
      const cand: NonNullable<GatewayAuditEvent['candidate']> = { version: ev.tenantPolicy.candidate.version, decision: c.decision }
      // Not enumerable: sinks that serialize the event (log, span) never see the parameters.
      Object.defineProperty(cand, 'sample', { value: { activeDecision: r.decision, params: req.params, obligations: c.obligations.length === 0 ? r.obligations : [...r.obligations, ...c.obligations] }, enumerable: false })
      e.candidate = cand
    }
    this.deps.decisions.record(e)
    return outcome
  }

  /** Audits a refusal and returns the error to throw. */
  private refused(req: DecisionRequest, view: TokenView | null, err: unknown): unknown {
    const message = err instanceof AegisError ? err.message : 'internal error'
    if (err instanceof AegisError && err.code === 'temporarily_unavailable') {
      // Something this gateway depends on is out (keys, manifest, DPoP replay cache): an outage, not a verdict on the token.
      this.deps.metrics.degraded.inc({ outcome: 'closed' })
      const e = this.event('decision.unavailable', req, view, message, undefined)
      e.degraded = 'closed'
      this.deps.decisions.record(e)
      return err.headers['retry-after'] !== undefined ? err : new AegisError(err.code, err.message, { cause: err.cause, headers: { ...err.headers, 'retry-after': String(OUTAGE_RETRY_AFTER_SECONDS) } })
    }
    this.deps.decisions.record(this.event(isReplayRefusal(err) ? 'token.replayed' : 'token.refused', req, view, message, undefined))
    return err
  }

  /**
   * A call refused because a shared backend is out (DESIGN.md error table:
   * `temporarily_unavailable`): counted in `aegis_degraded_decisions_total`
   * (outcome `closed`), audited as `decision.unavailable`, answered `503`
   * with `Retry-After` so SDKs and proxies retry.
   */
  private unavailable(req: DecisionRequest, view: TokenView, ev: Evaluation, degraded: Degradation): AegisError {
    this.deps.metrics.degraded.inc({ outcome: 'closed' })
    const e = this.event('decision.unavailable', req, view, degraded.reason, true)
    e.reasons = [degraded.reason]
    e.policy_version = ev.result.policyVersion
    e.risk = ev.result.risk
    e.degraded = 'closed'
    this.deps.decisions.record(e)
    return new AegisError('temporarily_unavailable', degraded.reason, { headers: { 'retry-after': String(OUTAGE_RETRY_AFTER_SECONDS) } })
  }

  private event(type: GatewayAuditEvent['type'], req: DecisionRequest, view: TokenView | null, error: string | undefined, enforced: boolean | undefined): GatewayAuditEvent {
    const f = view?.facts
    const e: GatewayAuditEvent = {
      type,
      ts: this.deps.clock.now(),
      gateway_id: this.deps.gatewayId,
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

  private counter(decision: Decision, enforced: boolean): Counter.Internal {
    const key = enforced ? decision : decision + ':shadow'
    let c = this.counters.get(key)
    if (c === undefined) {
      c = this.deps.metrics.decisions.labels({ decision, enforced: enforced ? 'true' : 'false' })
      this.counters.set(key, c)
    }
    return c
  }
}
