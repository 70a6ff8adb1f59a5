import type { Redis } from 'ioredis'
import type { FeedEvent, FeedSnapshot } from '../../feed/types.js'
import type { Logger } from '../../observability/logger.js'
import type { Revocation } from '../../store/types.js'
import type { GatewayState } from '../state.js'
import { Backoff, sleep } from './backoff.js'
import { parseFeedEvent, parseRevocation, parseSnapshot } from './parse.js'
import type { FeedSubscriber } from './types.js'

export interface RedisFeedOptions {
  /** Connection used only for SUBSCRIBE (ioredis reconnects it with backoff and jitter). */
  subscriber: Redis
  /** Connection for HGETALL. */
  command: Redis
  state: GatewayState
  logger: Logger
  /** Fetches the control plane's snapshot (agents, policies, revocations); rejects when unreachable. */
  fetchSnapshot: () => Promise<unknown>
  /** Defaults as src/feed/types.ts fixes them: `aegis:feed`, `aegis:revocations`. */
  channel?: string
  hashKey?: string
  /** How often the applied seq is checked against the control plane's while Redis is up (ms). Default 30 000. */
  reconcileMs?: number
  /** How often the control plane's snapshot is polled while Redis is down (ms). */
  pollWhileDownMs?: number
  /** Retry bounds for the control-plane snapshot (ms). */
  backoffInitialMs?: number
  backoffMaxMs?: number
}

/**
 * Follows the feed on Redis (src/feed/types.ts): on every (re)connect it
 * subscribes to `aegis:feed` first, buffering events, then loads the
 * persisted revocations (hash `aegis:revocations`) and the control plane's
 * snapshot, applies them, then the buffered events, so nothing published
 * during the load is lost. With the control plane unreachable the Redis hash
 * alone keeps revocations current and the snapshot is retried with backoff;
 * with Redis unreachable the control plane's snapshot is polled instead.
 */
export class RedisFeed implements FeedSubscriber {
  readonly ready: Promise<void>
  private resolveReady!: () => void
  private readonly channel: string
  private readonly hashKey: string
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

  constructor(private readonly opts: RedisFeedOptions) {
    this.ready = new Promise((resolve) => { this.resolveReady = resolve })
    this.channel = opts.channel ?? 'aegis:feed'
    this.hashKey = opts.hashKey ?? 'aegis:revocations'
    this.snapshotBackoff = new Backoff(opts.backoffInitialMs ?? 200, opts.backoffMaxMs ?? 10_000)
    this.pollMs = opts.pollWhileDownMs ?? 2_000
    this.reconcileMs = opts.reconcileMs ?? 30_000
  }

  start(): void {
    if (this.started) return
    this.started = true
    const sub = this.opts.subscriber
    sub.on('message', this.onMessage)
    sub.on('ready', this.onReady)
    sub.on('close', this.onClose)
    if (sub.status === 'ready') this.onReady()
    this.loop = this.maintain()
  }

  private readonly onClose = (): void => {
    if (!this.closed) this.opts.state.feedDisconnected('redis subscriber connection closed')
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
    try {
      ev = parseFeedEvent(JSON.parse(message))
    } catch { /* handled below */ }
    if (!ev) {
      this.opts.logger.error('malformed feed event on redis; resynchronizing')
      this.onReady()
      return
    }
    if (this.buffering) this.buffering.push(ev)
    else this.opts.state.applyEvent(ev)
  }

  /** Subscribe, then load, then apply what arrived meanwhile. */
  private async resync(): Promise<void> {
    this.buffering = []
    try {
      await this.opts.subscriber.subscribe(this.channel)
      const hash = await this.opts.command.hgetall(this.hashKey)
      const fromHash: Revocation[] = []
      for (const value of Object.values(hash)) {
        let r: Revocation | null = null
        try { r = parseRevocation(JSON.parse(value)) } catch { /* malformed */ }
        if (r) fromHash.push(r)
        else this.opts.logger.error('malformed entry in the redis revocation hash; ignored')
      }
      let snapshot: FeedSnapshot | null = null
      try {
        snapshot = parseSnapshot(await this.opts.fetchSnapshot())
        if (!snapshot) this.opts.logger.error('control plane answered a malformed feed snapshot')
      } catch (err) {
        this.opts.logger.warn({ err: err instanceof Error ? err.message : String(err) }, 'feed snapshot unavailable; revocations from redis only, retrying')
      }
      const pending = this.buffering
      this.buffering = null
      if (snapshot) {
        this.opts.state.applySnapshot(snapshot, fromHash, pending)
        this.snapshotBackoff.reset()
        this.resolveReady()
      } else {
        this.opts.state.applyRevocationList(fromHash, pending)
        this.needSnapshot = true
      }
      this.opts.state.feedConnected()
    } catch (err) {
      // The connection dropped mid-load; its next 'ready' starts over.
      const pending = this.buffering ?? []
      this.buffering = null
      for (const e of pending) this.opts.state.applyEvent(e)
      if (!this.closed) this.opts.logger.warn({ err: err instanceof Error ? err.message : String(err) }, 'redis feed resync failed')
    }
  }

  private needSnapshot = false

  /**
   * Runs for the gateway's life. While Redis is down, or the last resync
   * could not reach the control plane, it fetches the control plane's
   * snapshot with backoff: with Redis down the snapshot alone keeps the
   * deny list (and agents, policies) current, polled every few seconds;
   * once Redis is back, a resync merges everything.
   */
  private async maintain(): Promise<void> {
    let lastReconcile = Date.now()
    while (!this.closed) {
      const redisUp = this.opts.subscriber.status === 'ready'
      let wait = 500
      if (redisUp && !this.needSnapshot && this.syncing === undefined && Date.now() - lastReconcile >= this.reconcileMs) {
        lastReconcile = Date.now()
        await this.reconcile()
      } else if (!redisUp || this.needSnapshot) {
        let snap: FeedSnapshot | null = null
        try {
          snap = parseSnapshot(await this.opts.fetchSnapshot())
        } catch { /* unreachable: retried below */ }
        if (this.closed) return
        if (snap) {
          this.snapshotBackoff.reset()
          if (this.opts.subscriber.status === 'ready') {
            this.needSnapshot = false
            this.onReady()
          } else {
            this.opts.state.applySnapshot(snap)
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
    let snap: FeedSnapshot | null = null
    try {
      snap = parseSnapshot(await this.opts.fetchSnapshot())
    } catch {
      return
    }
    if (!snap || this.closed) return
    if (this.opts.state.differsFrom(snap)) {
      this.opts.logger.warn({ snapshot_seq: snap.seq, applied_seq: this.opts.state.appliedSeq }, 'redis feed missed events; resynchronizing (is the control plane publishing to this Redis?)')
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
    await this.syncing?.catch(() => {})
    await this.loop
    this.opts.state.feedDisconnected('closed')
  }
}
