/**
 * The deny list a gateway enforces: the revocation entries it holds,
 * checked per call. The in-process implementation is store/memory/deny-list.ts.
 */
import type { Revocation } from './types.js'

/** What a deny-list check needs to know about a verified token. */
export interface TokenFacts {
  jti: string
  tenant: string
  agentId: string
  clientId: string
  kid: string
  /** Epoch seconds. */
  iat: number
}

/** The revocation entries a gateway enforces, checked in O(1) per call. */
export interface DenyList {
  /** Applies an entry (idempotent by seq). */
  apply(r: Revocation): void
  /**
   * Drops entry `seq` because an admin lifted it; `liftSeq` (the lift's own
   * feed seq) advances lastSeq. Another entry on the same key stays in force.
   */
  lift(seq: number, liftSeq: number): void
  /** Replaces everything with a full list (feed (re)connect). */
  reset(entries: Revocation[], lastSeq: number): void
  /**
   * Replaces everything with the entries of `built`, a list of the same kind
   * filled while a snapshot loaded, taking its indexes over (no re-indexing
   * of 100,000 entries on the gateway's critical path); `built` is spent.
   */
  replaceWith(built: DenyList, lastSeq: number): void
  /** The matching entry's reason, or null when the token is not denied. */
  match(t: TokenFacts): Revocation | null
  /** Highest seq applied. */
  readonly lastSeq: number
  readonly size: number
  /** Drops entries past their expiresAt (epoch ms). */
  prune(now: number): void
}
