import { createParser, type EventSourceMessage } from 'eventsource-parser'
import type { Logger } from '../../observability/logger.js'
import type { ControlPlaneClient } from '../control-plane-client.js'
import type { GatewayState } from '../state.js'
import { Backoff, sleep } from './backoff.js'
import { parseFeedEvent, parseSnapshot, SnapshotAssembler } from './parse.js'
import type { FeedSubscriber } from './types.js'

export interface SseFeedOptions {
  client: ControlPlaneClient
  state: GatewayState
  logger: Logger
  /** Reconnect backoff bounds (ms). */
  backoffInitialMs?: number
  backoffMaxMs?: number
  /** No byte for this long (the server pings every 15 s) = dead connection. Default 45 000. */
  idleTimeoutMs?: number
  /** Called after each full snapshot applied and each resumption (metrics, tests). */
  onLoad?: (kind: 'snapshot' | 'resume') => void
}

const STREAM_PATH = '/admin/v1/revocations/stream'

/**
 * Follows the control plane's server-sent-events feed
 * (`GET /admin/v1/revocations/stream?v=3`, src/control-plane/feed/events.ts). The first
 * connection loads the snapshot in pages of tuples (a control plane that
 * knows only `?v=2` sends objects, also understood); a reconnect sends the cursor of
 * the last event applied as `Last-Event-ID` and resumes from it when that
 * control plane still holds everything after it, else loads a fresh
 * snapshot. A control plane that does not page sends the snapshot whole
 * (`event: snapshot`), also understood. A lost connection keeps the last
 * list and reconnects with backoff and jitter. A malformed event forces a
 * reconnect with a fresh snapshot rather than risking a missed revocation.
 */
export class SseFeed implements FeedSubscriber {
  readonly ready: Promise<void>
  private resolveReady!: () => void
  private started = false
  private readonly stop = new AbortController()
  private current: AbortController | undefined
  private loop: Promise<void> | undefined
  private readonly backoff: Backoff
  private readonly idleMs: number
  /** Cursor of the last event applied on top of a complete paged snapshot; sent as Last-Event-ID. */
  private cursor: string | undefined
  /** The paged snapshot being received, validated page by page. */
  private paging: SnapshotAssembler | null = null
  /** This connection speaks the paged protocol (cursors are feed-log positions, not seqs). */
  private pagedConnection = false

  constructor(private readonly opts: SseFeedOptions) {
    this.ready = new Promise((resolve) => {
      this.resolveReady = resolve
    })
    this.backoff = new Backoff(opts.backoffInitialMs ?? 100, opts.backoffMaxMs ?? 10_000)
    this.idleMs = opts.idleTimeoutMs ?? 45_000
  }

  start(): void {
    if (this.started) return
    this.started = true
    this.loop = this.run()
  }

  private async run(): Promise<void> {
    while (!this.stop.signal.aborted) {
      try {
        await this.connectOnce()
        this.opts.state.feedDisconnected('stream ended')
      } catch (err) {
        this.opts.state.feedDisconnected(err instanceof Error ? err.message : String(err))
        if (!this.stop.signal.aborted) this.opts.logger.warn({ err: err instanceof Error ? err.message : String(err) }, 'feed stream failed; reconnecting')
      }
      if (this.stop.signal.aborted) break
      await sleep(this.backoff.next(), this.stop.signal)
    }
  }

  private async connectOnce(): Promise<void> {
    const conn = new AbortController()
    this.current = conn
    const onStop = (): void => conn.abort()
    this.stop.signal.addEventListener('abort', onStop, { once: true })
    let lastByteAt = Date.now()
    const idle = setInterval(
      () => {
        if (Date.now() - lastByteAt > this.idleMs) conn.abort(new Error('feed stream idle'))
      },
      Math.min(5_000, this.idleMs),
    )
    idle.unref()
    this.paging = null
    this.pagedConnection = false
    const resume: Record<string, string> = this.cursor ? { 'last-event-id': this.cursor } : {}
    try {
      const res = await fetch(this.opts.client.url(`${STREAM_PATH}?v=3`), {
        headers: this.opts.client.headers({ accept: 'text/event-stream', 'cache-control': 'no-cache', ...resume }),
        signal: conn.signal,
      })
      if (!res.ok || !res.body) {
        await res.body?.cancel().catch(() => {})
        throw new Error(`feed stream answered ${res.status}`)
      }
      let failure: Error | undefined
      const parser = createParser({
        onEvent: (msg) => {
          try {
            this.onMessage(msg)
          } catch (err) {
            failure = err instanceof Error ? err : new Error(String(err))
            // Never resume past an event that could not be applied: reload.
            this.cursor = undefined
            conn.abort(failure)
          }
        },
        onComment: () => this.opts.state.heard(),
      })
      const decoder = new TextDecoder()
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        lastByteAt = Date.now()
        parser.feed(decoder.decode(chunk, { stream: true }))
        if (failure) throw failure
      }
      if (failure) throw failure
    } catch (err) {
      if (conn.signal.aborted && conn.signal.reason instanceof Error) throw conn.signal.reason
      throw err
    } finally {
      clearInterval(idle)
      this.stop.signal.removeEventListener('abort', onStop)
      this.current = undefined
    }
  }

  private onMessage(msg: EventSourceMessage): void {
    let data: unknown
    try {
      data = JSON.parse(msg.data)
    } catch {
      throw new Error(`malformed feed event (${msg.event ?? 'message'})`)
    }
    if (msg.event?.startsWith('snapshot-') || msg.event === 'resumed') {
      this.onPagedMessage(msg, data)
      return
    }
    if (msg.event === 'keys') {
      const ev = parseFeedEvent(data)
      if (!ev) throw new Error('malformed feed event (keys)')
      this.opts.state.applyEvent(ev)
      this.advance(msg)
      return
    }
    if (msg.event === 'snapshot') {
      const snap = parseSnapshot(data)
      if (!snap) throw new Error('malformed feed snapshot')
      // A control plane that does not page cannot resume either.
      this.cursor = undefined
      this.opts.onLoad?.('snapshot')
      this.opts.state.applySnapshot(snap)
      this.opts.state.feedConnected()
      this.backoff.reset()
      this.resolveReady()
      return
    }
    if (msg.event === 'revocation' || msg.event === 'revocation_lifted' || msg.event === 'agent' || msg.event === 'policy') {
      const ev = parseFeedEvent(data)
      if (!ev) throw new Error(`malformed feed event (${msg.event})`)
      this.opts.state.applyEvent(ev)
      this.advance(msg)
      return
    }
    // Unknown event names are for newer gateways; a ping-like sign of life for us.
    this.opts.state.heard()
  }

  /** Records the cursor of an event applied on a paged connection. */
  private advance(msg: EventSourceMessage): void {
    if (this.pagedConnection && msg.id) this.cursor = msg.id
  }

  /** `snapshot-begin` / `-revocations` / `-agents` / `-end` and `resumed` (paged protocol). */
  private onPagedMessage(msg: EventSourceMessage, data: unknown): void {
    this.pagedConnection = true
    switch (msg.event) {
      case 'resumed':
        this.opts.onLoad?.('resume')
        this.opts.logger.info({ from: this.cursor }, 'feed resumed without a reload')
        this.afterLoad(msg)
        return
      case 'snapshot-begin':
        this.paging = new SnapshotAssembler()
        this.paging.opening(data)
        return
      case 'snapshot-revocations':
      case 'snapshot-agents':
        if (!this.paging) throw new Error(`malformed feed ${msg.event}`)
        this.paging.page(msg.event === 'snapshot-revocations' ? 'revocations' : 'agents', data)
        return
      case 'snapshot-end': {
        const p = this.paging
        this.paging = null
        if (!p) throw new Error('incomplete feed snapshot')
        const snap = p.end(data)
        this.opts.onLoad?.('snapshot')
        this.opts.state.applySnapshot(snap)
        this.afterLoad(msg)
        return
      }
      default:
        this.opts.state.heard() // a newer control plane's page kind
    }
  }

  private afterLoad(msg: EventSourceMessage): void {
    this.cursor = msg.id || undefined
    this.opts.state.feedConnected()
    this.backoff.reset()
    this.resolveReady()
  }

  async close(): Promise<void> {
    this.stop.abort()
    this.current?.abort()
    await this.loop
    this.opts.state.feedDisconnected('closed')
  }
}
