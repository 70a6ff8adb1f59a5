import type { PolicyResult } from '../../policy/types.js'
import type { GatewayDeps } from '../deps.js'
import { isReadAction } from './action-class.js'
import type { TokenView } from './token-view.js'

/** A shared backend was unreachable: `open` lets the call through (counted, audited), `closed` refuses it. */
export interface Degradation {
  outcome: 'open' | 'closed'
  reason: string
}

const FEED_STALE: Degradation = Object.freeze({ outcome: 'closed', reason: 'degraded:feed_stale (revocation feed disconnected longer than gateway.feedStaleSeconds; high-risk actions fail closed)' })
const REDIS_CLOSED_HIGH: Degradation = Object.freeze({ outcome: 'closed', reason: 'degraded:redis_unavailable (high-risk actions always fail closed)' })
const REDIS_CLOSED: Degradation = Object.freeze({ outcome: 'closed', reason: 'degraded:redis_unavailable (failing closed; see gateway.redisOutageReads)' })
const REDIS_OPEN_READ: Degradation = Object.freeze({ outcome: 'open', reason: 'degraded:redis_unavailable (read allowed: gateway.redisOutageReads=open)' })
export const REPLAY_CLAIM_FAILED: Degradation = Object.freeze({ outcome: 'closed', reason: 'degraded:replay_cache_unavailable (single-use jti could not be recorded; failing closed)' })

/**
 * The freshness part of steps 2 and 4: decides what a call may do while the
 * feed or Redis is out. High-risk actions fail closed when the feed has been
 * disconnected longer than `gateway.feedStaleSeconds` or Redis is down;
 * other actions fail closed while Redis is down, except reads when
 * `gateway.redisOutageReads` is `open`. Null when nothing is degraded.
 */
export function assessBackends(deps: GatewayDeps, tool: string, result: PolicyResult, nowMs: number): Degradation | null {
  const high = result.risk === 'high'
  if (high && deps.state.feedStale(nowMs, deps.config.gateway.feedStaleSeconds * 1000)) return FEED_STALE
  const redis = deps.redisHealth
  if (redis === null || redis.healthy) return null
  if (high) return REDIS_CLOSED_HIGH
  if (deps.config.gateway.redisOutageReads === 'open' && isReadAction(tool, result)) return REDIS_OPEN_READ
  return REDIS_CLOSED
}

/** Whether step 4 applies: the policy marked the action high-risk (override tokens join in the approvals issue). */
export function needsReplayClaim(result: PolicyResult, dryRun: boolean): boolean {
  // A dry run asks what would happen; it must not use up the token's single use.
  return result.risk === 'high' && !dryRun
}

/**
 * Step 4 (DESIGN.md "Gateway"): records the token's `jti` as used, until the
 * token can no longer verify (exp + clock skew). Resolves true on the first
 * use, false on a replay; rejects when the replay cache is unreachable (the
 * caller fails closed).
 */
export function checkReplay(deps: GatewayDeps, view: TokenView): Promise<boolean> {
  return deps.replay.claim(view.facts.jti, view.exp + deps.config.tokens.clockSkewSeconds)
}
