import type { Redis } from 'ioredis'
import type { Logger } from '../observability/logger.js'
import type { BackendHealth } from './deps.js'

/**
 * Tracks whether Redis answers: both connections must be `ready` and a PING
 * on the command connection must come back within the connection's
 * `commandTimeout`. Checked every `intervalMs` in the background, so a
 * decision only reads a boolean. `CLIENT PAUSE` or a dead port both show up
 * as unhealthy within about one interval.
 */
export class RedisHealth implements BackendHealth {
  private ok = false
  private pinging = false
  private readonly timer: NodeJS.Timeout

  constructor(private readonly command: Redis, private readonly subscriber: Redis | null, private readonly logger: Logger, intervalMs = 1_000) {
    this.timer = setInterval(() => this.check(), intervalMs)
    this.timer.unref()
    command.on('close', this.down)
    command.on('ready', this.check)
    subscriber?.on('close', this.down)
    this.check()
  }

  get healthy(): boolean {
    return this.ok && this.command.status === 'ready' && (this.subscriber === null || this.subscriber.status === 'ready')
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
    this.command.ping().then(
      () => this.set(true),
      () => this.set(false),
    ).finally(() => { this.pinging = false })
  }

  private set(ok: boolean): void {
    if (ok !== this.ok) {
      if (ok) this.logger.info('redis reachable')
      else this.logger.warn('redis unreachable: degraded decisions (see gateway.redisOutageReads)')
    }
    this.ok = ok
  }

  close(): void {
    clearInterval(this.timer)
    this.command.off('close', this.down)
    this.command.off('ready', this.check)
    this.subscriber?.off('close', this.down)
  }
}
