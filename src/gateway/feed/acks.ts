import type { Logger } from '../../observability/logger.js'
import type { ControlPlaneClient } from '../control-plane-client.js'

/**
 * Acknowledged propagation (issue 3 item 7): reports the last revocation
 * seq this gateway applied with `POST /admin/v1/gateways/acks`. The first
 * report after a quiet period goes out at once; further ones are coalesced
 * to at most one per `minIntervalMs`, one request in flight at a time.
 * Failures are retried with the next report (and a periodic resend).
 */
export class AckReporter {
  private pending = 0
  private acked = -1
  private lastSentAt = Number.NEGATIVE_INFINITY
  private timer: NodeJS.Timeout | undefined
  private inflight: Promise<void> | undefined
  private closed = false
  private failures = 0
  private readonly resend: NodeJS.Timeout

  constructor(
    private readonly client: ControlPlaneClient,
    private readonly gatewayId: string,
    private readonly logger: Logger,
    private readonly minIntervalMs = 250,
    resendIntervalMs = 15_000,
  ) {
    // Periodic resend keeps the control plane's view of this gateway (and its lag) fresh after failures.
    this.resend = setInterval(() => {
      if (this.pending > 0) this.flush(true)
    }, resendIntervalMs)
    this.resend.unref()
  }

  /** Highest seq acknowledged by the control plane so far (-1 before any). */
  get acknowledged(): number {
    return this.acked
  }

  /** Records that revocations up to `seq` are applied. */
  notify(seq: number): void {
    if (this.closed) return
    if (seq > this.pending) this.pending = seq
    this.flush(false)
  }

  private flush(force: boolean): void {
    if (this.closed || this.inflight || this.timer) return
    if (!force && this.pending <= this.acked) return
    const wait = this.lastSentAt + this.minIntervalMs - Date.now()
    if (wait > 0) {
      this.timer = setTimeout(() => {
        this.timer = undefined
        this.flush(force)
      }, wait)
      this.timer.unref()
      return
    }
    const seq = this.pending
    this.lastSentAt = Date.now()
    this.inflight = this.client
      .postJson('/admin/v1/gateways/acks', { gateway_id: this.gatewayId, seq })
      .then(
        () => {
          this.failures = 0
          if (seq > this.acked) this.acked = seq
        },
        (err: unknown) => {
          // Back off while the control plane is away: the next try waits longer each time (≤ 15 s).
          this.failures++
          this.lastSentAt = Date.now() + Math.min(15_000, this.minIntervalMs * 2 ** this.failures)
          this.logger.warn({ err: err instanceof Error ? err.message : String(err), seq }, 'revocation ack failed; will retry')
        },
      )
      .finally(() => {
        this.inflight = undefined
        if (this.pending > this.acked) this.flush(false)
      })
  }

  /** Stops reporting; waits for a request in flight. */
  async close(): Promise<void> {
    this.closed = true
    clearInterval(this.resend)
    if (this.timer) clearTimeout(this.timer)
    this.timer = undefined
    await this.inflight
  }
}
