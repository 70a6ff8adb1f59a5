/**
 * The recent feed events of one control-plane process, in the order its hub
 * dispatched them (with Redis: every control plane's events, as the
 * subscription delivered them), each with a position and its JSON, bounded
 * in entries and bytes. SSE subscribers read from it at their own pace, so a
 * slow one costs a cursor, not a buffer; a reconnecting gateway resumes from
 * its cursor while the entry after it is still held.
 *
 * A cursor is `<epoch>.<pos>`: the epoch is random per process, so a cursor
 * from another control plane or from before a restart never resumes here.
 */
import { randomBytes } from 'node:crypto'
import type { FeedEvent } from './events.js'

export interface LoggedEvent {
  /** Position in this log, from 1, contiguous. */
  readonly pos: number
  readonly kind: FeedEvent['kind']
  /** The event as JSON (what goes on the wire). */
  readonly json: string
}

export interface FeedLogOptions {
  /** Most entries held. Default 50,000. */
  maxEntries?: number
  /** Most JSON bytes held (approximately: string lengths). Default 16 MiB. */
  maxBytes?: number
}

const CURSOR_RE = /^([A-Za-z0-9_-]{1,32})\.(\d{1,15})$/

export class FeedLog {
  private epochId = randomBytes(6).toString('base64url')
  private readonly watchers = new Set<() => void>()
  private buf: LoggedEvent[] = []
  private head = 0
  private bytes = 0
  private lastPos = 0
  private readonly maxEntries: number
  private readonly maxBytes: number

  constructor(opts: FeedLogOptions = {}) {
    this.maxEntries = Math.max(1, opts.maxEntries ?? 50_000)
    this.maxBytes = Math.max(1, opts.maxBytes ?? 16 * 1024 * 1024)
  }

  /** Random per process and per reset: cursors of another process, or from before a gap, never match. */
  get epoch(): string {
    return this.epochId
  }

  /** Position of the newest entry (0 before any). */
  get last(): number {
    return this.lastPos
  }

  /** Position of the oldest entry held (last + 1 when empty). */
  get first(): number {
    return this.lastPos - (this.buf.length - this.head) + 1
  }

  /** Entries held. */
  get size(): number {
    return this.buf.length - this.head
  }

  /** The cursor naming position `pos` of this log. */
  cursor(pos: number): string {
    return `${this.epoch}.${pos}`
  }

  /**
   * The position a cursor names, when it is one of this log's and nothing
   * after it was dropped yet; undefined otherwise (the caller reloads).
   */
  resumable(cursor: string | undefined): number | undefined {
    if (!cursor) return undefined
    const m = CURSOR_RE.exec(cursor.trim())
    if (!m || m[1] !== this.epoch) return undefined
    const pos = Number(m[2])
    if (pos > this.lastPos || pos < this.first - 1) return undefined
    return pos
  }

  append(event: FeedEvent): LoggedEvent {
    const e: LoggedEvent = { pos: ++this.lastPos, kind: event.kind, json: JSON.stringify(event) }
    this.buf.push(e)
    this.bytes += e.json.length
    while (this.size > 1 && (this.size > this.maxEntries || this.bytes > this.maxBytes)) {
      this.bytes -= this.buf[this.head]!.json.length
      this.buf[this.head] = undefined as unknown as LoggedEvent
      this.head++
    }
    // Compact now and then so dropped entries do not pin the array.
    if (this.head > 1024 && this.head * 2 > this.buf.length) {
      this.buf = this.buf.slice(this.head)
      this.head = 0
    }
    this.wake()
    return e
  }

  /**
   * Events may have been missed (the hub's Redis subscription dropped):
   * forgets every entry and changes the epoch, so no cursor from before
   * resumes and every reader behind falls off (after() answers null).
   */
  reset(): void {
    this.epochId = randomBytes(6).toString('base64url')
    this.buf = []
    this.head = 0
    this.bytes = 0
    // One position for the gap, so even a reader that was caught up falls off.
    this.lastPos++
    this.wake()
  }

  /** Calls `fn` after every append and reset; returns the unwatcher. */
  watch(fn: () => void): () => void {
    this.watchers.add(fn)
    return () => {
      this.watchers.delete(fn)
    }
  }

  private wake(): void {
    for (const fn of [...this.watchers]) fn()
  }

  /**
   * Up to `limit` entries after position `pos`, oldest first; null when the
   * entry right after `pos` was already dropped (the reader fell too far
   * behind and must reload).
   */
  after(pos: number, limit: number): LoggedEvent[] | null {
    if (pos < this.first - 1 || pos > this.lastPos) return null
    if (pos >= this.lastPos) return []
    const start = this.head + (pos - this.first + 1)
    return this.buf.slice(start, Math.min(this.buf.length, start + limit))
  }
}
