import { createParser, type EventSourceMessage } from 'eventsource-parser'
import type { Logger } from '../../observability/logger.js'
import type { ControlPlaneClient } from '../control-plane-client.js'
import type { GatewayState } from '../state.js'
import { Backoff, sleep } from './backoff.js'
import { parseFeedEvent, parseSnapshot } from './parse.js'
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
}

const STREAM_PATH = '/admin/v1/revocations/stream'

/**
 * Follows the control plane's server-sent-events feed
 * (`GET /admin/v1/revocations/stream`, src/feed/types.ts). Each connection
 * starts with a full snapshot, so a reconnect reloads the whole list; a lost
 * connection keeps the last list and reconnects with backoff and jitter. A
 * malformed event forces a reconnect (and so a fresh snapshot) rather than
 * risking a missed revocation.
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

  constructor(private readonly opts: SseFeedOptions) {
    this.ready = new Promise((resolve) => { this.resolveReady = resolve })
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
    const idle = setInterval(() => {
      if (Date.now() - lastByteAt > this.idleMs) conn.abort(new Error('feed stream idle'))
    }, Math.min(5_000, this.idleMs))
    idle.unref()
    try {
      const res = await fetch(this.opts.client.url(STREAM_PATH), {
        headers: this.opts.client.headers({ accept: 'text/event-stream', 'cache-control': 'no-cache' }),
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
    if (msg.event === 'snapshot') {
      const snap = parseSnapshot(data)
      if (!snap) throw new Error('malformed feed snapshot')
      this.opts.state.applySnapshot(snap)
      this.opts.state.feedConnected()
      this.backoff.reset()
      this.resolveReady()
      return
    }
    if (msg.event === 'revocation' || msg.event === 'agent' || msg.event === 'policy') {
      const ev = parseFeedEvent(data)
      if (!ev) throw new Error(`malformed feed event (${msg.event})`)
      this.opts.state.applyEvent(ev)
      return
    }
    // Unknown event names are for newer gateways; a ping-like sign of life for us.
    this.opts.state.heard()
  }

  async close(): Promise<void> {
    this.stop.abort()
    this.current?.abort()
    await this.loop
    this.opts.state.feedDisconnected('closed')
  }
}
