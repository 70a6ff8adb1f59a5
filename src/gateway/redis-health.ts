import type { Redis } from 'ioredis'
import type { Logger } from '../observability/logger.js'
import type { BackendHealth } from './deps.js'

/**
 * Tracks whether Redis answers what decisions need from it (replay claims):
 * the command connection must be `ready` and a PING on it must come back
 * within the connection's `commandTimeout`. Checked every `intervalMs` in
 * the background and on every reconnect, so a decision only reads a
 * boolean. `CLIENT PAUSE` or a dead port both show up as unhealthy within
 * about one interval. The subscriber's state is the feed's business
 * (`GatewayState.feedStale`): a subscriber that drops alone does not stop
 * replay claims; it is reported as `subscriberReady`.
 */
export class RedisHealth implements BackendHealth {
  private ok = false
  private pinging = false
  private readonly timer: NodeJS.Timeout

  constructor(
    private readonly command: Redis,
    private readonly subscriber: Redis | null,
    private readonly logger: Logger,
    intervalMs = 1_000,
  ) {
    this.timer = setInterval(() => this.check(), intervalMs)
    this.timer.unref()
    command.on('close', this.down)
    command.on('ready', this.check)
    this.check()
  }

  get healthy(): boolean {
    return this.ok && this.command.status === 'ready'
  }

  /** Whether the subscriber connection is up (null without one). */
  get subscriberReady(): boolean | null {
    return this.subscriber === null ? null : this.subscriber.status === 'ready'
  }

  private readonly down = (): void => {
    this.set(false)
  }

  private readonly check = (): void => {
    if (this.pinging) return
    if (this.command.status !== 'ready') {
      this.set(false)
      return
    }
    this.pinging = true
    this.command
      .ping()
      .then(
        () => this.set(true),
        () => this.set(false),
      )
      .finally(() => {
        this.pinging = false
      })
  }

  private set(ok: boolean): void {
    if (ok !== this.ok) {
      if (ok) this.logger.info('redis reachable')
      else this.logger.warn('redis unreachable: calls that need a replay claim answer 503 (see gateway.redisOutageReads)')
    }
    this.ok = ok
  }

  close(): void {
    clearInterval(this.timer)
    this.command.off('close', this.down)
    this.command.off('ready', this.check)
  }
}
