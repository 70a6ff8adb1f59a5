/** A feed transport (SSE or Redis) keeping a GatewayState current. */
export interface FeedSubscriber {
  /** Resolves once the first full snapshot was applied; never rejects. */
  readonly ready: Promise<void>
  /** Starts following (idempotent). */
  start(): void
  close(): Promise<void>
}
