import type { AegisConfig } from '../config/schema.js'
import type { Clock } from '../lib/clock.js'
import type { Logger } from '../observability/logger.js'
import type { Metrics } from '../observability/metrics.js'
import type { DenyList } from '../store/deny-list.js'
import type { ReplayCache } from '../store/replay-cache.js'
import type { Decision, HttpCall, Obligation, PolicyCompiler, PolicyResult } from '../policy/types.js'
import type { Verifier } from '../verify/index.js'
import type { GatewayState } from './state.js'
import type { ManifestCache } from './manifests.js'
import type { TokenView } from './pipeline/token-view.js'

/** An approval reference returned with `approval_needed` (docs/reference.md "Approvals"). */
export interface ApprovalRef {
  id: string
  status_url: string
}

/** What an approval hook learns about a call whose decision is `approval_needed`. */
export interface ApprovalContext {
  token: TokenView
  tool: string
  params: Record<string, unknown>
  resource: string | null
  /** Reverse-proxy mode: the forwarded HTTP request; an override must be bound to it. */
  http: HttpCall | null
  result: PolicyResult
  /** Raw `Aegis-Override` header value, or null. Never log it. */
  override: string | null
  /** Which entry point asked (for the hook's audit events). */
  mode?: EntryMode
}

/**
 * The seam where approvals plug into the pipeline (step 6). The default hook
 * answers null: `approval_needed` is returned as is, without an approval id.
 * A hook may also turn the decision into `allow` when a valid override token
 * for exactly this action accompanies the call.
 */
export interface ApprovalHook {
  resolve(ctx: ApprovalContext): ApprovalResolution | null | Promise<ApprovalResolution | null>
  /** The approval's override was spent elsewhere (another gateway process): an identical ask must open a new request, not name this one. */
  forget?(approvalId: string): void
}

export type ApprovalResolution = { kind: 'pending'; approval: ApprovalRef } | { kind: 'overridden'; reason: string }

/**
 * A gateway audit event: `decision`, `token.refused`, `token.replayed`, or
 * `decision.unavailable` (a call answered `503` because something the
 * gateway depends on is out: Redis, the feed, the control plane; not a
 * policy decision).
 */
export interface GatewayAuditEvent {
  type: 'decision' | 'token.refused' | 'token.replayed' | 'decision.unavailable'
  ts: number
  gateway_id: string
  mode: EntryMode
  tenant: string | null
  agent_id: string | null
  client_id: string | null
  jti: string | null
  tool: string | null
  resource: string | null
  decision?: Decision
  enforced?: boolean
  reasons?: string[]
  policy_version?: string
  policy_ids?: string[]
  risk?: 'high' | 'normal'
  /** Set when a shared backend was unreachable: `open` let the call through, `closed` refused it. */
  degraded?: 'open' | 'closed'
  /** Why a token was refused (never the token). */
  error?: string
  /**
   * Candidate bundle's decision, evaluated side by side. `sample` is set
   * non-enumerable by the pipeline, so the call's parameters never reach a
   * log line or span: only the candidate-diff reporter reads (and sanitizes) it.
   */
  candidate?: { version: string; decision: Decision; readonly sample?: CandidateSample }
  /** Pipeline latency of a `decision` (ms), for its trace span. */
  latency_ms?: number
}

/** What a candidate-diff sample needs beyond the event (see `GatewayAuditEvent.candidate`). */
export interface CandidateSample {
  /** The active bundle's own decision (before an override or a fail-closed outage changed it). */
  activeDecision: Decision
  /** The call's parameters as received (unsanitized: never log them). */
  params: Record<string, unknown>
  /** Redactions both bundles' decisions name, for sanitizing `params`. */
  obligations: readonly Obligation[]
}

/**
 * Where gateway audit events go. For now a structured `audit` log line
 * (LogDecisionSink); later also the control plane's audit log. Must not
 * throw and must not block: it is called on the hot path.
 */
export interface DecisionSink {
  /**
   * `params`: the call's parameters with the decision's sanitize obligations
   * applied (`decision` events only), for sinks that keep them (the decision
   * log). Beside the event, not in it, so sinks that write the event (log
   * lines, spans) never carry parameters.
   */
  record(event: GatewayAuditEvent, params?: Readonly<Record<string, unknown>>): void
  close?(): Promise<void>
}

/** Health of a shared backend (Redis), kept current in the background. */
export interface BackendHealth {
  readonly healthy: boolean
}

/** Which entry point asked. */
export type EntryMode = 'authorize' | 'ext_authz' | 'proxy' | 'mcp'

/** Knobs tests and embedders may turn; defaults follow src/control-plane/feed/events.ts and the config. */
export interface GatewayTuning {
  /** Prefix of replay-cache keys in Redis; default `aegis:jti:`. */
  redisKeyPrefix: string
  /** Redis feed channel and revocation hash; default `aegis:feed`, `aegis:revocations`. */
  feedChannel: string
  feedHashKey: string
  /** How often Redis health is probed (ms). */
  redisHealthIntervalMs: number
  /** Redis command timeout (ms): an unanswered replay claim fails closed after this. */
  redisCommandTimeoutMs: number
  /** Least time between two acknowledgements (ms). */
  ackIntervalMs: number
  /** Feed reconnect backoff bounds (ms). */
  feedBackoffInitialMs: number
  feedBackoffMaxMs: number
  /** Deny-list prune period (ms). */
  pruneIntervalMs: number
  /** Redis feed: how often the applied seq is checked against the control plane's (ms). */
  feedReconcileMs: number
  /** Redis feed: how long a reconnect waits for the command connection to resume from the log rather than reload (ms). */
  feedResumeWaitMs: number
}

/** Everything the gateway's pipeline and entry points use. */
export interface GatewayDeps {
  config: AegisConfig
  logger: Logger
  metrics: Metrics
  clock: Clock
  /** Reported with acknowledgements and audit events. */
  gatewayId: string
  verifier: Verifier
  denyList: DenyList
  replay: ReplayCache
  state: GatewayState
  manifests: ManifestCache
  policyCompiler: PolicyCompiler
  decisions: DecisionSink
  approvals: ApprovalHook
  /** Redis health when the gateway uses Redis; null otherwise. */
  redisHealth: BackendHealth | null
  tuning: GatewayTuning
}

export type { Obligation }
