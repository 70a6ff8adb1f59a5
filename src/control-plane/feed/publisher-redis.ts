/**
 * Redis feed publisher (docs/reference.md "Revocation", src/control-plane/feed/events.ts): every
 * event is `PUBLISH`ed on `aegis:feed`, revocations are also kept in hash
 * `aegis:revocations` (field = seq) so a starting gateway can load them with
 * the control plane down. Each event is also appended to the stream
 * `aegis:feed:log` (capped at about FEED_LOG_MAXLEN entries) and published
 * with its stream id as `pos`, all in one script: a gateway whose
 * subscription dropped reads what it missed from the stream, in the order
 * pub/sub delivers it, instead of reloading everything. A second connection
 * subscribes to the channel and feeds a local hub, so this control plane's
 * SSE stream and caches see every control plane's changes, including its
 * own, in one order.
 */
import { Redis } from 'ioredis'
import type { Logger } from 'pino'
import type { Revocation } from '../../store/types.js'
import type { FeedLog } from './log.js'
import { LocalFeedHub, type FeedHub, type FeedListener } from './publisher-sse.js'
import type { FeedEvent } from './events.js'

/** Redis names of the feed. `prefix` isolates tests sharing one Redis. */
export function feedKeys(prefix = ''): { channel: string; revocations: string; log: string } {
  return { channel: `${prefix}aegis:feed`, revocations: `${prefix}aegis:revocations`, log: feedLogKey(`${prefix}aegis:feed`) }
}

/** The stream holding recent events of the feed published on `channel`. */
export function feedLogKey(channel: string): string {
  return `${channel}:log`
}

/** About how many events the Redis feed log keeps (MAXLEN ~): the window in which a gateway resumes. */
export const FEED_LOG_MAXLEN = 100_000

/**
 * KEYS: hash, log stream, channel. ARGV: event JSON, hash op ('set', 'del'
 * or ''), hash field, hash value, log cap. Appends to the log, then
 * publishes the event with `"pos": <stream id>` first; returns the id.
 */
const PUBLISH_SCRIPT = `
if ARGV[2] == 'set' then redis.call('HSET', KEYS[1], ARGV[3], ARGV[4]) elseif ARGV[2] == 'del' then redis.call('HDEL', KEYS[1], ARGV[3]) end
local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*', 'e', ARGV[1])
redis.call('PUBLISH', KEYS[3], '{"pos":"' .. id .. '",' .. string.sub(ARGV[1], 2))
return id
`

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
  private readonly keys: { channel: string; revocations: string; log: string }
  private closed = false
  private readActive: (() => Promise<Revocation[]>) | undefined
  private refilling: Promise<void> | undefined

  private constructor(private readonly opts: RedisFeedOptions) {
    this.keys = feedKeys(opts.prefix)
    this.hub = new LocalFeedHub((err) => opts.logger.error({ err }, 'feed listener failed'))
    this.pub = new Redis(opts.url, { lazyConnect: true, maxRetriesPerRequest: 2, enableOfflineQueue: true })
    this.pub.defineCommand('aegisFeedPublish', { numberOfKeys: 3, lua: PUBLISH_SCRIPT })
    this.sub = new Redis(opts.url, { lazyConnect: true, maxRetriesPerRequest: null })
    this.pub.on('error', (err) => opts.logger.warn({ err: err.message }, 'redis feed publisher connection error'))
    this.sub.on('error', (err) => opts.logger.warn({ err: err.message }, 'redis feed subscriber connection error'))
    // Events published while the subscription was down never reached this hub: its log cannot resume anyone across that gap.
    let subscribedOnce = false
    this.sub.on('ready', () => {
      if (subscribedOnce) {
        opts.logger.warn('redis feed subscription back; feed log reset, SSE followers reload their snapshot')
        this.hub.log.reset()
        // Redis may have come back empty (no persistence): a gateway that starts while no control plane answers loads the hash alone.
        this.refilling ??= this.refill().finally(() => {
          this.refilling = undefined
        })
      }
      subscribedOnce = true
    })
    this.sub.on('message', (channel: string, message: string) => {
      if (channel !== this.keys.channel) return
      let event: FeedEvent & { pos?: string }
      try {
        event = JSON.parse(message) as FeedEvent & { pos?: string }
      } catch {
        opts.logger.warn('malformed feed message on redis ignored')
        return
      }
      // The Redis log position means nothing to SSE followers (they have this hub's own).
      delete event.pos
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

  /**
   * Persists a revocation in the hash (a lift removes it), appends the event
   * to the log and publishes it, in one script; rejects when Redis fails.
   */
  async publish(event: FeedEvent): Promise<void> {
    const message = JSON.stringify(event)
    let op = ''
    let field = ''
    let value = ''
    if (event.kind === 'revocation') [op, field, value] = ['set', String(event.revocation.seq), JSON.stringify(event.revocation)]
    else if (event.kind === 'revocation_lifted') [op, field] = ['del', String(event.revocation.seq)]
    try {
      await (this.pub as Redis & { aegisFeedPublish(...args: string[]): Promise<string> }).aegisFeedPublish(
        this.keys.revocations,
        this.keys.log,
        this.keys.channel,
        message,
        op,
        field,
        value,
        String(FEED_LOG_MAXLEN),
      )
    } catch (err) {
      throw new Error(`redis feed publish failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err })
    }
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

  /** Where the live revocations are read (the control plane's store) to refill the hash after Redis lost it. */
  refillFrom(readActive: () => Promise<Revocation[]>): void {
    this.readActive = readActive
  }

  /** Resolves once a refill started by a reconnect is done (tests). */
  async refilled(): Promise<void> {
    await this.refilling
  }

  /**
   * After a reconnect, puts back the live revocations the hash lacks (Redis
   * restarted without persistence, or was flushed). An entry lifted while
   * this ran would be put back by it, so what is no longer live by the end
   * is taken out again: a lift that commits after the second read deletes
   * its field itself, after this wrote it.
   */
  private async refill(): Promise<void> {
    const read = this.readActive
    if (!read || this.closed) return
    try {
      const live = await read()
      if (live.length === 0 || (await this.pub.hlen(this.keys.revocations)) >= live.length) return
      const tx = this.pub.multi()
      for (const r of live) tx.hset(this.keys.revocations, String(r.seq), JSON.stringify(r))
      await tx.exec()
      const still = new Set((await read()).map((r) => r.seq))
      const gone = live.filter((r) => !still.has(r.seq)).map((r) => String(r.seq))
      if (gone.length > 0) await this.pub.hdel(this.keys.revocations, ...gone)
      this.opts.logger.warn({ revocations: live.length - gone.length }, 'redis revocation hash refilled after a reconnect (Redis had lost it)')
    } catch (err) {
      this.opts.logger.error({ err: err instanceof Error ? err.message : String(err) }, 'redis revocation hash could not be refilled after a reconnect')
    }
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    await this.hub.close()
    await Promise.allSettled([this.sub.quit(), this.pub.quit()])
    this.opts.logger.debug('redis feed closed')
  }
}
