import type { Redis } from 'ioredis'
import type { FeedEvent, FeedSnapshot, FeedSummary } from '../../control-plane/index.js'
import type { Logger } from '../../observability/logger.js'
import type { Revocation } from '../../store/types.js'
import type { GatewayState } from '../state.js'
import { Backoff, sleep } from './backoff.js'
import { parseFeedEvent, parseRevocation } from './parse.js'
import type { FeedSubscriber } from './types.js'

export interface RedisFeedOptions {
  /** Connection used only for SUBSCRIBE (ioredis reconnects it with backoff and jitter). */
  subscriber: Redis
  /** Connection for HGETALL. */
  command: Redis
  state: GatewayState
  logger: Logger
  /** Fetches and validates the control plane's snapshot (agents, policies, revocations); null when malformed, rejects when unreachable. */
  fetchSnapshot: () => Promise<FeedSnapshot | null>
  /** The control plane's snapshot without revocations, for the periodic check (reconcileMs); null when malformed. Default: fetchSnapshot. */
  fetchSummary?: () => Promise<FeedSummary | null>
  /** Defaults as src/control-plane/feed/events.ts fixes them: `aegis:feed`, `aegis:revocations`. */
  channel?: string
  hashKey?: string
  /** How often the applied seq is checked against the control plane's while Redis is up (ms). Default 30 000. */
  reconcileMs?: number
  /** How often the control plane's snapshot is polled while Redis is down (ms). */
  pollWhileDownMs?: number
  /** Retry bounds for the control-plane snapshot (ms). */
  backoffInitialMs?: number
  backoffMaxMs?: number
  /**
   * How often the subscriber connection is checked with a PING while it
   * looks connected (ms). Default 1 000. A subscriber sends nothing, so a
   * silent network cut (no reset) would otherwise go unnoticed.
   */
  livenessIntervalMs?: number
  /** A PING (or the resync's SUBSCRIBE) unanswered this long means the connection is dead: it is dropped and reconnected (ms). Default 2 000. */
  livenessTimeoutMs?: number
  /**
   * After a reconnect, how long a resumption from the log waits for the
   * command connection to come back before it reloads everything instead
   * (ms). Default 2 000.
   */
  resumeWaitMs?: number
  /** Stream of recent events (src/control-plane/feed/publisher-redis.ts); default `<channel>:log`. */
  logKey?: string
  /** Called after each full load at a (re)connect, each resumption from the log, each snapshot polled while Redis is down (metrics, tests). */
  onLoad?: (kind: 'snapshot' | 'resume' | 'poll') => void
}

/** Entries read per XRANGE when catching up from the log. */
const LOG_PAGE = 1000

/** Orders Redis stream ids (`<ms>-<seq>`). */
function compareIds(a: string, b: string): number {
  const [am = 0, as = 0] = a.split('-').map(Number)
  const [bm = 0, bs = 0] = b.split('-').map(Number)
  return am - bm || as - bs
}

/** The stream id right after `id` (XRANGE's start is inclusive). */
function nextId(id: string): string {
  const [ms = '0', seq = '0'] = id.split('-')
  return `${ms}-${Number(seq) + 1}`
}

/**
 * Follows the feed on Redis (src/control-plane/feed/events.ts): on every (re)connect it
 * subscribes to `aegis:feed` first, buffering events, then loads the
 * persisted revocations (hash `aegis:revocations`) and the control plane's
 * snapshot, applies them, then the buffered events, so nothing published
 * during the load is lost. With the control plane unreachable the Redis hash
 * alone keeps revocations current and the snapshot is retried with backoff;
 * with Redis unreachable the control plane's snapshot is polled instead.
 *
 * Recovery never waits on one particular event: the subscriber and the
 * command connection come back in either order after a Redis restart, so a
 * resync starts on either one's `ready`, and until one has succeeded since
 * the subscriber last connected, `maintain()` retries it with a short
 * backoff (issue 15: back on a fresh list within 2 s of Redis answering).
 */
export class RedisFeed implements FeedSubscriber {
  readonly ready: Promise<void>
  private resolveReady!: () => void
  private readonly channel: string
  private readonly hashKey: string
  private readonly logKey: string
  /**
   * Log position (stream id) of the last event applied, when every event up
   * to it was applied: a resync starts from there when the log still holds
   * it (issue 14: a reconnect catches up without reloading everything).
   */
  private cursor: string | undefined
  /** Log positions of buffered events (pub/sub messages carry `pos`). */
  private readonly posOf = new WeakMap<FeedEvent, string>()
  /** Until when a resync with a cursor waits for the command connection before reloading everything. */
  private commandWaitUntil: number | undefined
  private buffering: FeedEvent[] | null = null
  private started = false
  private closed = false
  private syncing: Promise<void> | undefined
  private resyncAgain = false
  private readonly stop = new AbortController()
  private readonly snapshotBackoff: Backoff
  private readonly pollMs: number
  private readonly reconcileMs: number
  private loop: Promise<void> | undefined
  /** True once a resync succeeded on the subscriber's current connection. */
  private inSync = false
  /** Bumped whenever the subscriber's connection closes: a resync begun before it proves nothing. */
  private generation = 0
  /** Earliest time (epoch ms) the maintain loop may retry a failed resync. */
  private retryAt = 0
  private readonly resyncBackoff = new Backoff(50, 500)
  private lastFailureLog = 0
  private readonly livenessIntervalMs: number
  private readonly livenessTimeoutMs: number
  private lastPing = 0
  private pinging = false

  constructor(private readonly opts: RedisFeedOptions) {
    this.ready = new Promise((resolve) => {
      this.resolveReady = resolve
    })
    this.channel = opts.channel ?? 'aegis:feed'
    this.hashKey = opts.hashKey ?? 'aegis:revocations'
    this.logKey = opts.logKey ?? `${this.channel}:log`
    this.snapshotBackoff = new Backoff(opts.backoffInitialMs ?? 200, opts.backoffMaxMs ?? 10_000)
    this.pollMs = opts.pollWhileDownMs ?? 2_000
    this.reconcileMs = opts.reconcileMs ?? 30_000
    this.livenessIntervalMs = opts.livenessIntervalMs ?? 1_000
    this.livenessTimeoutMs = opts.livenessTimeoutMs ?? 2_000
  }

  start(): void {
    if (this.started) return
    this.started = true
    const sub = this.opts.subscriber
    sub.on('message', this.onMessage)
    sub.on('ready', this.onReady)
    sub.on('close', this.onClose)
    this.opts.command.on('ready', this.onCommandReady)
    if (sub.status === 'ready') this.onReady()
    this.loop = this.maintain()
  }

  private readonly onClose = (): void => {
    this.generation++
    this.inSync = false
    if (!this.closed) this.opts.state.feedDisconnected('redis subscriber connection closed')
  }

  /** The command connection came back: a resync that failed for want of it runs now. */
  private readonly onCommandReady = (): void => {
    // A resync under way needs no second one: it loads from the control plane without the command connection, or fails and is retried.
    if (!this.inSync && this.syncing === undefined && this.opts.subscriber.status === 'ready') this.onReady()
  }

  private readonly onReady = (): void => {
    if (this.closed) return
    if (this.syncing) {
      this.resyncAgain = true
      return
    }
    this.syncing = this.resync().finally(() => {
      this.syncing = undefined
      if (this.resyncAgain && !this.closed) {
        this.resyncAgain = false
        this.onReady()
      }
    })
  }

  private readonly onMessage = (channel: string, message: string): void => {
    if (channel !== this.channel) return
    let ev: FeedEvent | null = null
    let pos: unknown
    try {
      const raw = JSON.parse(message) as { pos?: unknown }
      pos = raw.pos
      ev = parseFeedEvent(raw)
    } catch {
      /* handled below */
    }
    if (!ev) {
      this.opts.logger.error('malformed feed event on redis; resynchronizing')
      // A full reload: resuming from the log would skip this event again.
      this.cursor = undefined
      this.onReady()
      return
    }
    if (this.buffering) {
      if (typeof pos === 'string') this.posOf.set(ev, pos)
      this.buffering.push(ev)
      // Applied now as well (a revocation must not wait for a snapshot being loaded), and again on top of what is loaded.
      this.opts.state.applyEvent(ev)
    } else {
      this.opts.state.applyEvent(ev)
      // Only while every event since the last load is known to be applied (not while a failed resync is retried).
      if (typeof pos === 'string' && this.inSync) this.cursor = pos
    }
  }

  /**
   * Subscribe, then load, then apply what arrived meanwhile. The load needs
   * the control plane's snapshot or the Redis hash (read on the command
   * connection); with both, they are merged. The snapshot alone is
   * complete (it comes from the database); the hash alone (control plane
   * unreachable) is merged into what is held, never replacing it, since a
   * Redis that restarted empty holds only what was published since.
   */
  private async resync(): Promise<void> {
    const sub = this.opts.subscriber
    // Not connected: its next 'ready' starts over (a SUBSCRIBE now would only wait in the offline queue).
    if (sub.status !== 'ready') return
    const generation = this.generation
    this.buffering = []
    try {
      await this.answered(sub.subscribe(this.channel), 'SUBSCRIBE')
      if (await this.resumeFromLog(generation)) return
      // Newest log position before the snapshot is read: everything up to it is in the snapshot.
      const head = await this.logHead()
      // The hash and the snapshot are read at once: a starting gateway waits for the slower, not for both.
      const hashRead: Promise<Revocation[]> =
        this.opts.command.status === 'ready'
          ? this.opts.command.hgetall(this.hashKey).then((h) => this.parseHash(h))
          : Promise.reject(new Error('redis command connection not ready'))
      const [hashResult, snapshotResult] = await Promise.allSettled([hashRead, this.opts.fetchSnapshot()])
      const fromHash = hashResult.status === 'fulfilled' ? hashResult.value : null
      const hashError: unknown = hashResult.status === 'rejected' ? hashResult.reason : undefined
      let snapshot: FeedSnapshot | null = null
      if (snapshotResult.status === 'fulfilled') {
        snapshot = snapshotResult.value
        if (!snapshot) this.opts.logger.error('control plane answered a malformed feed snapshot')
      } else if (fromHash !== null) {
        const err: unknown = snapshotResult.reason
        this.opts.logger.warn({ err: err instanceof Error ? err.message : String(err) }, 'feed snapshot unavailable; revocations from redis only, retrying')
      }
      if (snapshot === null && fromHash === null) throw hashError ?? new Error('neither the control plane snapshot nor the redis hash could be read')
      // The subscriber dropped meanwhile: events may have been missed, so this load proves nothing.
      if (this.generation !== generation || sub.status !== 'ready') throw new Error('redis subscriber connection dropped during the resync')
      const pending = this.buffering
      this.buffering = null
      if (snapshot) {
        this.opts.state.applySnapshot(snapshot, fromHash ?? [], pending)
        this.cursor = this.lastPosOf(pending, head)
        this.commandWaitUntil = undefined
        this.opts.onLoad?.('snapshot')
        this.snapshotBackoff.reset()
        this.resolveReady()
      } else {
        this.opts.state.applyRevocationList(fromHash ?? [], pending)
        this.needSnapshot = true
      }
      this.inSync = true
      this.resyncBackoff.reset()
      this.opts.state.feedConnected()
    } catch (err) {
      const pending = this.buffering ?? []
      this.buffering = null
      for (const e of pending) this.opts.state.applyEvent(e)
      // maintain() retries with backoff; a connection's 'ready' retries at once.
      this.inSync = false
      this.retryAt = Date.now() + this.resyncBackoff.next()
      if (!this.closed && Date.now() - this.lastFailureLog > 5_000) {
        this.lastFailureLog = Date.now()
        this.opts.logger.warn({ err: err instanceof Error ? err.message : String(err) }, 'redis feed resync failed; retrying')
      }
    }
  }

  /**
   * After a reconnect, applies what the log holds after the cursor, then
   * what was buffered meanwhile (skipping what the log already gave), in the
   * order pub/sub delivers. Resolves false, having applied nothing, when
   * there is no cursor or the log no longer holds it (trimmed, or Redis lost
   * it): the caller reloads everything.
   */
  private async resumeFromLog(generation: number): Promise<boolean> {
    const from = this.cursor
    if (from === undefined || !this.opts.state.snapshotLoaded) return false
    // The connections come back in either order, and a Redis just back may be slow: retry for a little while rather than reload everything.
    const notYet = (why: string): false => {
      this.commandWaitUntil ??= Date.now() + (this.opts.resumeWaitMs ?? 2_000)
      if (Date.now() < this.commandWaitUntil) throw new Error(`${why}; resuming from the log once it is`)
      return false
    }
    if (this.opts.command.status !== 'ready') return notYet('redis command connection not ready yet')
    const missed: Array<{ ev: FeedEvent; pos: string }> = []
    let start = from
    for (let first = true; ; first = false) {
      let page: Array<[string, string[]]>
      try {
        page = await this.opts.command.xrange(this.logKey, start, '+', 'COUNT', LOG_PAGE)
      } catch (err) {
        return notYet(`redis feed log unreadable (${err instanceof Error ? err.message : String(err)})`)
      }
      // The entry at the cursor must still be there, or entries after it may be gone too.
      if (first && page[0]?.[0] !== from) return false
      for (const [id, fields] of page) {
        if (id === from) continue
        let ev: FeedEvent | null = null
        try {
          ev = parseFeedEvent(JSON.parse(fields[fields.indexOf('e') + 1] ?? ''))
        } catch {
          /* malformed */
        }
        if (!ev) return false
        missed.push({ ev, pos: id })
      }
      if (page.length < LOG_PAGE) break
      start = nextId(page[page.length - 1]![0])
    }
    if (this.generation !== generation || this.opts.subscriber.status !== 'ready') throw new Error('redis subscriber connection dropped during the resync')
    const pending = this.buffering ?? []
    this.buffering = null
    let last = from
    for (const m of missed) {
      this.opts.state.applyEvent(m.ev)
      last = m.pos
    }
    for (const e of pending) {
      const pos = this.posOf.get(e)
      if (pos !== undefined && compareIds(pos, last) <= 0) continue
      this.opts.state.applyEvent(e)
      if (pos !== undefined) last = pos
    }
    this.cursor = last
    this.commandWaitUntil = undefined
    this.inSync = true
    this.resyncBackoff.reset()
    this.opts.state.feedConnected()
    this.opts.onLoad?.('resume')
    this.opts.logger.info({ from, to: last, events: missed.length }, 'redis feed resumed from its log without a reload')
    return true
  }

  /** Id of the newest log entry, or undefined (no log, or unreadable). */
  private async logHead(): Promise<string | undefined> {
    if (this.opts.command.status !== 'ready') return undefined
    try {
      const [entry] = await this.opts.command.xrevrange(this.logKey, '+', '-', 'COUNT', 1)
      return entry?.[0]
    } catch {
      return undefined
    }
  }

  /** The greatest of `head` and the positions of `events` (undefined when none). */
  private lastPosOf(events: FeedEvent[], head: string | undefined): string | undefined {
    let last = head
    for (const e of events) {
      const pos = this.posOf.get(e)
      if (pos !== undefined && (last === undefined || compareIds(pos, last) > 0)) last = pos
    }
    return last
  }

  private parseHash(hash: Record<string, string>): Revocation[] {
    const out: Revocation[] = []
    for (const value of Object.values(hash)) {
      let r: Revocation | null = null
      try {
        r = parseRevocation(JSON.parse(value))
      } catch {
        /* malformed */
      }
      if (r) out.push(r)
      else this.opts.logger.error('malformed entry in the redis revocation hash; ignored')
    }
    return out
  }

  private needSnapshot = false

  /** `p`, or a rejection after livenessTimeoutMs (the connection is then dropped and reconnected). */
  private answered<T>(p: Promise<T>, what: string): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new Error(`redis ${what} unanswered for ${this.livenessTimeoutMs} ms`))
        this.dropSilentSubscriber()
      }, this.livenessTimeoutMs)
      timer.unref()
      p.then(
        (v) => {
          clearTimeout(timer)
          resolve(v)
        },
        (err: unknown) => {
          clearTimeout(timer)
          reject(err)
        },
      )
    })
  }

  /**
   * PINGs the subscriber connection (allowed while subscribed); no answer
   * within livenessTimeoutMs drops it, so the feed counts as disconnected,
   * the control plane is polled meanwhile, and the reconnect resyncs.
   */
  private checkSubscriber(): void {
    this.pinging = true
    this.lastPing = Date.now()
    this.answered(this.opts.subscriber.ping(), 'PING')
      .catch(() => {})
      .finally(() => {
        this.pinging = false
      })
  }

  private dropSilentSubscriber(): void {
    const sub = this.opts.subscriber
    if (this.closed || sub.status !== 'ready') return
    this.opts.logger.warn({ timeout_ms: this.livenessTimeoutMs }, 'redis subscriber connection silent; reconnecting it')
    // Closing emits 'close' (feed disconnected, generation bumped); ioredis then reconnects with its retry strategy.
    sub.disconnect(true)
  }

  /**
   * Runs for the gateway's life. While the subscriber is connected but no
   * resync has succeeded on its connection, it retries the resync with a
   * short backoff. While Redis is down, or the last resync could not reach
   * the control plane, it fetches the control plane's snapshot with
   * backoff: with Redis down the snapshot alone keeps the deny list (and
   * agents, policies) current, polled every few seconds; once Redis is
   * back, a resync merges everything.
   */
  private async maintain(): Promise<void> {
    let lastReconcile = Date.now()
    while (!this.closed) {
      const redisUp = this.opts.subscriber.status === 'ready'
      let wait = 500
      if (redisUp && !this.inSync) {
        if (this.syncing === undefined && Date.now() >= this.retryAt) this.onReady()
        wait = 50
      } else if (redisUp && !this.needSnapshot && this.syncing === undefined && Date.now() - lastReconcile >= this.reconcileMs) {
        lastReconcile = Date.now()
        await this.reconcile()
      } else if (redisUp && !this.pinging && Date.now() - this.lastPing >= this.livenessIntervalMs) {
        this.checkSubscriber()
        wait = 50
      } else if (!redisUp || this.needSnapshot) {
        let snap: FeedSnapshot | null = null
        try {
          snap = await this.opts.fetchSnapshot()
        } catch {
          /* unreachable: retried below */
        }
        if (this.closed) return
        if (snap) {
          this.snapshotBackoff.reset()
          if (this.opts.subscriber.status === 'ready') {
            this.needSnapshot = false
            this.onReady()
          } else {
            this.opts.state.applySnapshot(snap)
            this.opts.onLoad?.('poll')
            this.resolveReady()
            wait = this.pollMs
          }
        } else {
          wait = this.snapshotBackoff.next()
        }
      }
      await sleep(wait, this.stop.signal)
    }
  }

  /**
   * Pub/sub delivers at most once, and a gateway pointed at a Redis its
   * control plane does not publish to would hear nothing at all: now and then
   * compare the control plane's snapshot (revocation seq, agents' hashes,
   * bundles) with what is held, and resynchronize when something was missed.
   */
  private async reconcile(): Promise<void> {
    let snap: FeedSummary | null = null
    try {
      snap = await (this.opts.fetchSummary ?? this.opts.fetchSnapshot)()
    } catch {
      return
    }
    if (!snap || this.closed) return
    if (this.opts.state.differsFrom(snap)) {
      this.opts.logger.warn(
        { snapshot_seq: snap.seq, applied_seq: this.opts.state.appliedSeq },
        'redis feed missed events; resynchronizing (is the control plane publishing to this Redis?)',
      )
      // What the log holds did not prevent this: reload everything.
      this.cursor = undefined
      this.onReady()
    }
  }

  async close(): Promise<void> {
    this.closed = true
    this.stop.abort()
    const sub = this.opts.subscriber
    sub.off('message', this.onMessage)
    sub.off('ready', this.onReady)
    sub.off('close', this.onClose)
    this.opts.command.off('ready', this.onCommandReady)
    await this.syncing?.catch(() => {})
    await this.loop
    this.opts.state.feedDisconnected('closed')
  }
}
