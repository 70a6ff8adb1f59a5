import type { PolicyResult } from '../../policy/types.js'
import type { GatewayDeps } from '../deps.js'
import { isReadAction } from './action-class.js'
import type { TokenView } from './token-view.js'

/**
 * A shared backend was unreachable: `open` lets the call through (counted,
 * audited), `closed` refuses it. An enforced `closed` call is not a policy
 * decision: it answers `503 temporarily_unavailable` with `Retry-After`
 * (the reason as `error_description`), so clients and proxies retry.
 */
export interface Degradation {
  outcome: 'open' | 'closed'
  reason: string
}

/** `Retry-After` (seconds) of a call refused for an outage: about how long a Redis reconnect takes. */
export const OUTAGE_RETRY_AFTER_SECONDS = 1

const FEED_STALE: Degradation = Object.freeze({
  outcome: 'closed',
  reason: 'degraded:feed_stale (revocation feed disconnected longer than gateway.feedStaleSeconds; high-risk actions fail closed)',
})
const REDIS_CLOSED_HIGH: Degradation = Object.freeze({
  outcome: 'closed',
  reason: 'degraded:redis_unavailable (the single-use jti of a high-risk action cannot be recorded; failing closed)',
})
const REDIS_CLOSED: Degradation = Object.freeze({
  outcome: 'closed',
  reason: 'degraded:redis_unavailable (revocation feed stale as well; failing closed, see gateway.redisOutageReads)',
})
const REDIS_OPEN_READ: Degradation = Object.freeze({
  outcome: 'open',
  reason: 'degraded:redis_unavailable (revocation feed stale; read allowed: gateway.redisOutageReads=open)',
})
export const REPLAY_CLAIM_FAILED: Degradation = Object.freeze({
  outcome: 'closed',
  reason: 'degraded:replay_cache_unavailable (single-use jti could not be recorded; failing closed)',
})

/**
 * The freshness part of steps 2 and 4: decides what a call may do while the
 * feed or Redis is out. A call that needs a replay claim (`claim`) fails
 * closed while Redis is down. Otherwise a call needs nothing from Redis and
 * is decided as usual while the deny list is fresh (feed connected, or
 * down for at most `gateway.feedStaleSeconds`; a Redis feed polls the
 * control plane meanwhile), exactly as with a disconnected SSE feed. Past
 * that bound high-risk actions fail closed, and with Redis down as well so
 * do the others, except reads when `gateway.redisOutageReads` is `open`.
 * A policy `deny` stands whatever is out (a fresher deny list could only
 * add to it). Null when nothing is degraded.
 */
export function assessBackends(deps: GatewayDeps, tool: string, result: PolicyResult, nowMs: number, claim: boolean): Degradation | null {
  if (result.decision === 'deny') return null
  const redisDown = deps.redisHealth !== null && !deps.redisHealth.healthy
  if (claim && redisDown) return REDIS_CLOSED_HIGH
  if (!deps.state.feedStale(nowMs, deps.config.gateway.feedStaleSeconds * 1000)) return null
  if (result.risk === 'high') return FEED_STALE
  if (!redisDown) return null
  if (deps.config.gateway.redisOutageReads === 'open' && isReadAction(tool, result)) return REDIS_OPEN_READ
  return REDIS_CLOSED
}

/**
 * Whether step 5 applies: the policy marked the action high-risk and did not
 * deny it (a denied call performs nothing, so it uses up nothing and needs
 * nothing from Redis). Override tokens are claimed by the approvals hook.
 */
export function needsReplayClaim(result: PolicyResult, dryRun: boolean): boolean {
  // A dry run asks what would happen; it must not use up the token's single use.
  return result.risk === 'high' && result.decision !== 'deny' && !dryRun
}

/**
 * Step 4 (docs/reference.md "Gateway"): records the token's `jti` as used, until the
 * token can no longer verify (exp + clock skew). Resolves true on the first
 * use, false on a replay; rejects when the replay cache is unreachable (the
 * caller fails closed).
 */
export function checkReplay(deps: GatewayDeps, view: TokenView): Promise<boolean> {
  return deps.replay.claim(view.facts.jti, view.exp + deps.config.tokens.clockSkewSeconds)
}
