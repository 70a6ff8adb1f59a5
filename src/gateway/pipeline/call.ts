import type { Decision, HttpCall, Obligation, PolicyResult } from '../../policy/types.js'
import type { ApprovalRef, ApprovalResolution, EntryMode, GatewayDeps } from '../deps.js'
import type { VerifiedManifest } from '../manifests.js'
import type { Degradation } from './check-replay.js'
import type { Evaluation } from './evaluate-policy.js'
import type { SenderSource } from './sender-constraint.js'
import type { TokenView } from './token-view.js'

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
  /** The exact JSON text `params` was parsed from, when the entry point has it (a proxied JSON body): the policy cache's key. */
  paramsText?: string
}

/** The pipeline's answer (docs/reference.md `/v1/authorize` body, in camelCase). */
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

/**
 * What one decision carries from step to step. Each step reads what earlier
 * steps set and sets its own fields; a field marked "set by X" is defined
 * for every step after X (a step that cannot set it throws instead).
 * Every field exists from the start, so all calls share one shape and the
 * steps' property accesses stay monomorphic on the hot path.
 */
export class Call {
  /** Set by verifyBearer. */
  view!: TokenView
  /** Set by findManifest. */
  manifest!: VerifiedManifest
  /** Set by evaluateCall: the policy's evaluation, before any override or outage. */
  ev!: Evaluation
  /** Set by evaluateCall (epoch ms): the time the policy saw, and the staleness reference. */
  nowMs = 0
  /** Set by the runner when a step waited: the clock has moved since evaluateCall, so the audit event reads it again. */
  waited = false
  /** Set by evaluateCall: false in shadow mode (gateway or bundle) and for dry runs. */
  enforced = false
  /** Set by evaluateCall: the jti must be claimed single-use (step 5); cleared when an outage already settled the call. */
  claim = false
  /** Set by assessOutage, or by claimReplay when the replay cache fails. */
  degraded: Degradation | null = null
  /** Set by askApproval. */
  approval: ApprovalResolution | null = null
  /** Set by settleVerdict: the deciding result (the approved evaluation once an override lifted the approval). */
  result!: PolicyResult
  /** Set by settleVerdict: the answer, which later steps complete (sanitized parameters) and report. */
  outcome!: DecisionOutcome
  /** Set by countDecision (ms since `started`). */
  latencyMs = 0

  constructor(
    readonly deps: GatewayDeps,
    readonly req: DecisionRequest,
    /** `performance.now()` when the call arrived. */
    readonly started: number,
  ) {}
}

/**
 * One step of the pipeline: reads and annotates `call`, or throws a refusal.
 * Returns a promise only when it really waits (a key fetch, a manifest not
 * yet held, a DPoP proof, a replay claim, an approval hook that awaits).
 */
export type Step = (call: Call) => void | Promise<void>
