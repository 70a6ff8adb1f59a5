/**
 * The single-use jti registry contract. Implementations: in-process
 * (store/memory/replay-cache.ts) and shared by every gateway through Redis
 * (store/redis/replay-cache.ts).
 */

/** Single-use jti registry shared by every gateway. */
export interface ReplayCache {
  /**
   * Records `jti` until `expiresAt` (epoch seconds). Resolves false if it was
   * already recorded. Atomic across gateways (Redis `SET NX ... EXAT`).
   * Rejects when the backend is unreachable (the caller decides fail-closed/open).
   */
  claim(jti: string, expiresAt: number): Promise<boolean>
  close(): Promise<void>
}
