/**
 * Redis feed publisher (DESIGN.md "Revocation", src/feed/types.ts): every
 * event is `PUBLISH`ed on `aegis:feed`, revocations are also kept in hash
 * `aegis:revocations` (field = seq) so a starting gateway can load them with
 * the control plane down. A second connection subscribes to the channel and
 * feeds a local hub, so this control plane's SSE stream and caches see every
 * control plane's changes, including its own, in one order.
 */
import { Redis } from 'ioredis'
import type { Logger } from 'pino'
import type { Revocation } from '../store/types.js'
import type { FeedLog } from './log.js'
import { LocalFeedHub, type FeedHub, type FeedListener } from './publisher-sse.js'
import type { FeedEvent } from './types.js'

/** Redis names of the feed. `prefix` isolates tests sharing one Redis. */
export function feedKeys(prefix = ''): { channel: string; revocations: string } {
  return { channel: `${prefix}aegis:feed`, revocations: `${prefix}aegis:revocations` }
}

export interface RedisFeedOptions {
  url: string
  logger: Logger
  /** Prepended to the channel and hash names (tests). */
  prefix?: string
}

export class RedisFeedPublisher implements FeedHub {
  private readonly pub: Redis
  private readonly sub: Redis
  private readonly hub: LocalFeedHub
  private readonly keys: { channel: string; revocations: string }
  private closed = false

  private constructor(private readonly opts: RedisFeedOptions) {
    this.keys = feedKeys(opts.prefix)
    this.hub = new LocalFeedHub((err) => opts.logger.error({ err }, 'feed listener failed'))
    this.pub = new Redis(opts.url, { lazyConnect: true, maxRetriesPerRequest: 2, enableOfflineQueue: true })
    this.sub = new Redis(opts.url, { lazyConnect: true, maxRetriesPerRequest: null })
    this.pub.on('error', (err) => opts.logger.warn({ err: err.message }, 'redis feed publisher connection error'))
    this.sub.on('error', (err) => opts.logger.warn({ err: err.message }, 'redis feed subscriber connection error'))
    // Events published while the subscription was down never reached this hub: its log cannot resume anyone across that gap.
    let subscribedOnce = false
    this.sub.on('ready', () => {
      if (subscribedOnce) {
        opts.logger.warn('redis feed subscription back; feed log reset, SSE followers reload their snapshot')
        this.hub.log.reset()
      }
      subscribedOnce = true
    })
    this.sub.on('message', (channel: string, message: string) => {
      if (channel !== this.keys.channel) return
      let event: FeedEvent
      try {
        event = JSON.parse(message) as FeedEvent
      } catch {
        opts.logger.warn('malformed feed message on redis ignored')
        return
      }
      this.hub.dispatch(event)
    })
  }

  /** Connects both connections and subscribes; rejects when Redis is unreachable. */
  static async open(opts: RedisFeedOptions): Promise<RedisFeedPublisher> {
    const p = new RedisFeedPublisher(opts)
    try {
      await p.pub.connect()
      await p.sub.connect()
      await p.sub.subscribe(p.keys.channel)
    } catch (err) {
      p.pub.disconnect()
      p.sub.disconnect()
      throw err
    }
    return p
  }

  get subscribers(): number {
    return this.hub.subscribers
  }

  get log(): FeedLog {
    return this.hub.log
  }

  subscribe(listener: FeedListener): () => void {
    return this.hub.subscribe(listener)
  }

  /** Persists a revocation in the hash (a lift removes it) and publishes, in one MULTI; rejects when Redis fails. */
  async publish(event: FeedEvent): Promise<void> {
    const message = JSON.stringify(event)
    const tx = this.pub.multi()
    if (event.kind === 'revocation') tx.hset(this.keys.revocations, String(event.revocation.seq), JSON.stringify(event.revocation))
    else if (event.kind === 'revocation_lifted') tx.hdel(this.keys.revocations, String(event.revocation.seq))
    tx.publish(this.keys.channel, message)
    const res = await tx.exec()
    const failed = res?.find(([err]) => err)
    if (!res || failed) throw new Error(`redis feed publish failed: ${failed?.[0]?.message ?? 'transaction aborted'}`)
  }

  /**
   * Makes the hash hold exactly the live revocations (control-plane start:
   * Redis may have been flushed or hold entries that expired).
   */
  async syncRevocations(active: Revocation[], now: number): Promise<void> {
    const existing = await this.pub.hgetall(this.keys.revocations)
    const drop: string[] = []
    for (const [field, json] of Object.entries(existing)) {
      try {
        const r = JSON.parse(json) as Revocation
        if (r.expiresAt <= now) drop.push(field)
      } catch {
        drop.push(field)
      }
    }
    const tx = this.pub.multi()
    if (drop.length > 0) tx.hdel(this.keys.revocations, ...drop)
    for (const r of active) tx.hset(this.keys.revocations, String(r.seq), JSON.stringify(r))
    await tx.exec()
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    await this.hub.close()
    await Promise.allSettled([this.sub.quit(), this.pub.quit()])
    this.opts.logger.debug('redis feed closed')
  }
}
