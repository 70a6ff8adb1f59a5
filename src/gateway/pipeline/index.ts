import type { GatewayDeps } from '../deps.js'
import { Call, type DecisionOutcome, type DecisionRequest, type Step } from './call.js'
import { auditDecision, countDecision, sanitizeParams, settleVerdict } from './finish.js'
import { askApproval, assessOutage, checkSenderBinding, claimReplay, evaluateCall, findManifest, refuseRevoked, verifyBearer } from './steps.js'

export type { DecisionOutcome, DecisionRequest } from './call.js'
export type { TokenView } from './token-view.js'
export { verifyToken } from './verify-token.js'
export { checkDenyList } from './check-deny-list.js'
export { enforceSenderConstraint, authScheme, type SenderSource } from './sender-constraint.js'
export { checkReplay, assessBackends } from './check-replay.js'
export { evaluatePolicy } from './evaluate-policy.js'
export { resolveApproval, noApprovals } from './resolve-approval.js'
export { isReadAction } from './action-class.js'

/**
 * The decision pipeline (docs/reference.md "Gateway"), in order, failing closed at
 * every step. Policy evaluation is pure, so it runs before the replay
 * claim: that is how the gateway knows which actions the policy marks
 * high-risk. A step throws to refuse; a step that does not apply to a call
 * (no claim needed, no approval asked) returns at once.
 */
const STEPS: readonly Step[] = [
  verifyBearer, // 1. RFC 8725 verification (verified-token cache)
  refuseRevoked, // 2. deny list, current capability manifest
  checkSenderBinding, // 3. cnf: client certificate or DPoP proof
  findManifest, //    the manifest the token was minted against
  evaluateCall, // 4. policy: decision, obligations, risk, enforcement
  assessOutage, //    feed or Redis out: fail open or closed
  claimReplay, // 5. single-use jti of a high-risk action
  askApproval, // 6. approval request or one-time override
  settleVerdict, //    the answer: override and outage applied to the policy's result
  sanitizeParams, //    obligations applied to the parameters
  countDecision, //    metrics
  auditDecision, //    the `decision` audit event
]

/**
 * Runs the steps from `from` on: synchronously while each step does, so a
 * reused token with nothing to wait for allocates no promise; from the
 * first step that waits on, in that promise's continuation.
 */
function run(call: Call, from: number): DecisionOutcome | Promise<DecisionOutcome> {
  for (let i = from; i < STEPS.length; i++) {
    const waiting = STEPS[i]!(call)
    if (waiting !== undefined) {
      call.waited = true
      return waiting.then(() => run(call, i + 1))
    }
  }
  return call.outcome
}

/**
 * The decision pipeline behind every entry point. `decide` stays
 * synchronous unless something is really asynchronous: an unknown `kid`, a
 * manifest not yet held, a DPoP proof, a replay claim, an approval hook that
 * awaits. Token refusals throw (or reject with) an AegisError:
 * `invalid_token` (401) or `temporarily_unavailable` (503).
 */
export class DecisionPipeline {
  constructor(private readonly deps: GatewayDeps) {}

  decide(req: DecisionRequest): DecisionOutcome | Promise<DecisionOutcome> {
    return run(new Call(this.deps, req, performance.now()), 0)
  }
}
