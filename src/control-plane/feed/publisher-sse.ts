/**
 * In-process feed fan-out: every published event goes to every local
 * subscriber (the SSE streams of this control plane, its caches). Used alone
 * without Redis; with Redis it is fed from the Redis subscription instead.
 */
import { FeedLog, type FeedLogOptions } from './log.js'
import type { FeedEvent, FeedPublisher } from './events.js'

/** Receives each feed event; must not throw (a throwing listener is dropped from that event only). */
export type FeedListener = (event: FeedEvent) => void

/** A publisher that local consumers can also subscribe to. */
export interface FeedHub extends FeedPublisher {
  /** Registers a listener; returns the function that unregisters it. */
  subscribe(listener: FeedListener): () => void
  /** Number of current subscribers (for tests and metrics). */
  readonly subscribers: number
  /** Recent events with positions, for SSE subscribers and resumption (src/control-plane/feed/log.ts). */
  readonly log: FeedLog
}

/** True when `feed` also lets local consumers subscribe. */
export function isFeedHub(feed: FeedPublisher): feed is FeedHub {
  return typeof (feed as Partial<FeedHub>).subscribe === 'function'
}

/** Synchronous in-process fan-out. */
export class LocalFeedHub implements FeedHub {
  private readonly listeners = new Set<FeedListener>()
  private closed = false
  readonly log: FeedLog

  constructor(
    private readonly onListenerError?: (err: unknown) => void,
    logOptions?: FeedLogOptions,
  ) {
    this.log = new FeedLog(logOptions)
  }

  get subscribers(): number {
    return this.listeners.size
  }

  subscribe(listener: FeedListener): () => void {
    this.listeners.add(listener)
    return () => {
      this.listeners.delete(listener)
    }
  }

  /** Delivers to every subscriber before resolving. */
  async publish(event: FeedEvent): Promise<void> {
    this.dispatch(event)
  }

  /** Fan-out without a promise (used by the Redis subscriber). */
  dispatch(event: FeedEvent): void {
    if (this.closed) return
    // Logged first: a listener woken by this event finds it in the log.
    this.log.append(event)
    for (const listener of [...this.listeners]) {
      try {
        listener(event)
      } catch (err) {
        this.onListenerError?.(err)
      }
    }
  }

  async close(): Promise<void> {
    this.closed = true
    this.listeners.clear()
  }
}

/** The SSE-only publisher: in-process fan-out, nothing shared between processes. */
export function createSsePublisher(onListenerError?: (err: unknown) => void): LocalFeedHub {
  return new LocalFeedHub(onListenerError)
}
