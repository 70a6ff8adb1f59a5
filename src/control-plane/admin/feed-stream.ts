/**
 * The paged, resumable feed (issue 14; src/control-plane/feed/events.ts "Paged feed"):
 *
 * - `GET /admin/v1/revocations/stream?v=2` (SSE). With a `Last-Event-ID`
 *   this control plane can resume from (its feed log still holds every
 *   event after it): `event: resumed`, then those events. Otherwise a
 *   snapshot in pages, sent while it is read: `event: snapshot-begin`
 *   (generatedAt, policies, keys), `event: snapshot-revocations` and
 *   `event: snapshot-agents` (JSON arrays of at most 1,000 entries), then
 *   `event: snapshot-end` (seq, and the entry counts to check against)
 *   whose `id` is the cursor the snapshot is consistent with. Then every change, `event: <kind>`, `id: <cursor>`,
 *   `data: <FeedEvent JSON>`, and `: ping` every 15 s.
 * - `GET /admin/v1/feed/snapshot?paged=true` (NDJSON): the same snapshot,
 *   one JSON object a line: `{"begin": …}`, `{"revocations": […]}`,
 *   `{"agents": […]}`, `{"end": {"seq", "revocations", "agents", "cursor"}}`.
 * - `v=3` on either: page entries as tuples (src/control-plane/feed/events.ts).
 *
 * Memory per subscriber is bounded: pages are serialized once and shared
 * (SnapshotCache), events are read from the shared feed log at the
 * subscriber's pace, and nothing more is written while more than
 * HIGH_WATER_BYTES wait unsent. A subscriber that falls behind the whole
 * log is disconnected; it reconnects and reloads.
 */
import type { ServerResponse } from 'node:http'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { Unavailable } from '../../errors.js'
import type { FeedHub } from '../feed/publisher-sse.js'
import type { ControlPlaneDeps } from '../deps.js'
import type { PagedSnapshot, SnapshotCache, SnapshotFormat } from '../revocation/snapshot.js'

/** Unsent bytes after which a subscriber's writer waits for its socket to drain. */
export const HIGH_WATER_BYTES = 1024 * 1024
/** Events read from the log per step. */
const BATCH = 512

export interface FeedStreamContext {
  deps: ControlPlaneDeps
  /** Null when the feed publisher has no local hub (no log: snapshots only, never resumable). */
  hub: FeedHub | null
  snapshots: SnapshotCache
  /** Open streams, ended when the server closes. */
  streams: Set<ServerResponse>
  closing(): boolean
  pingMs: number
}

/** True when the caller asked for the paged, resumable stream (`?v=2`, or `?v=3` for tuple pages). */
export function wantsPagedStream(request: FastifyRequest): boolean {
  const v = (request.query as Record<string, unknown> | undefined)?.v
  return v === '2' || v === '3'
}

/** Tuple pages for `?v=3`, objects otherwise. */
function pageFormat(request: FastifyRequest): SnapshotFormat {
  return (request.query as Record<string, unknown> | undefined)?.v === '3' ? 'tuples' : 'objects'
}

/** True when the caller asked for the NDJSON paged snapshot (`?paged=true`). */
export function wantsPagedSnapshot(request: FastifyRequest): boolean {
  const v = (request.query as Record<string, unknown> | undefined)?.paged
  return v === 'true' || v === '1'
}

/** Resolves true once fewer than HIGH_WATER_BYTES wait unsent; false when the connection closed first. */
function drained(res: ServerResponse): Promise<boolean> {
  if (res.destroyed || res.writableEnded) return Promise.resolve(false)
  if (res.writableLength < HIGH_WATER_BYTES) return Promise.resolve(true)
  return new Promise((resolve) => {
    const done = (ok: boolean): void => {
      res.off('drain', onDrain)
      res.off('close', onClose)
      resolve(ok)
    }
    const onDrain = (): void => done(true)
    const onClose = (): void => done(false)
    res.on('drain', onDrain)
    res.on('close', onClose)
  })
}

function lastEventId(request: FastifyRequest): string | undefined {
  const h = request.headers['last-event-id']
  if (typeof h === 'string' && h !== '') return h
  const q = (request.query as Record<string, unknown> | undefined)?.last_event_id
  return typeof q === 'string' && q !== '' ? q : undefined
}

/**
 * Writes a snapshot as it is read: the opening record, each page, the
 * closing record, each through `frame`, waiting for the socket to drain
 * between pages. Resolves false when the connection closed first; rejects
 * when reading the snapshot failed.
 */
async function writeSnapshot(
  res: ServerResponse,
  snap: PagedSnapshot,
  frame: {
    begin(json: string): string
    page(kind: 'revocations' | 'agents', json: string): string
    end(json: string): string
  },
): Promise<boolean> {
  await snap.opened()
  if (snap.failed) throw snap.failed
  res.write(frame.begin(snap.begin))
  for (let i = 0; ; ) {
    if (i >= snap.pages.length && snap.end === undefined) await snap.more(i)
    if (snap.failed) throw snap.failed
    if (i < snap.pages.length) {
      const p = snap.pages[i++]!
      res.write(frame.page(p.kind, p.json))
      if (!(await drained(res))) return false
      continue
    }
    res.write(frame.end(snap.end!))
    return true
  }
}

/** `GET /admin/v1/revocations/stream?v=2`. */
export async function streamPagedFeed(ctx: FeedStreamContext & { hub: FeedHub }, request: FastifyRequest, reply: FastifyReply): Promise<void> {
  const { deps, hub } = ctx
  const log = hub.log
  const resumedFrom = log.resumable(lastEventId(request))
  const snap: PagedSnapshot | undefined = resumedFrom === undefined ? ctx.snapshots.get(pageFormat(request)) : undefined
  if (ctx.closing()) throw new Unavailable('the control plane is shutting down')
  reply.hijack()
  const res = reply.raw
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-store',
    connection: 'keep-alive',
    'x-accel-buffering': 'no',
  })
  ctx.streams.add(res)
  let wake: (() => void) | null = null
  const unsubscribe = log.watch(() => {
    const w = wake
    wake = null
    w?.()
  })
  const ping = setInterval(() => {
    if (!res.writableEnded && res.writableLength < HIGH_WATER_BYTES) res.write(': ping\n\n')
  }, ctx.pingMs)
  res.on('close', () => {
    clearInterval(ping)
    unsubscribe()
    ctx.streams.delete(res)
    const w = wake
    wake = null
    w?.()
  })
  const open = (): boolean => !res.destroyed && !res.writableEnded

  const pump = async (): Promise<void> => {
    let pos: number
    if (snap) {
      const written = await writeSnapshot(res, snap, {
        begin: (json) => `event: snapshot-begin\ndata: ${json}\n\n`,
        page: (kind, json) => `event: snapshot-${kind}\ndata: ${json}\n\n`,
        end: (json) => `event: snapshot-end\nid: ${log.cursor(snap.pos)}\ndata: ${json}\n\n`,
      })
      if (!written) return
      pos = snap.pos
    } else {
      pos = resumedFrom!
      res.write(`event: resumed\nid: ${log.cursor(pos)}\ndata: ${JSON.stringify({ from: log.cursor(pos) })}\n\n`)
      deps.logger.debug({ ip: request.ip, from: pos }, 'feed subscriber resumed')
    }
    while (open()) {
      const batch = log.after(pos, BATCH)
      if (batch === null) {
        deps.logger.warn({ ip: request.ip }, 'feed subscriber fell behind the feed log; disconnected (it reloads on reconnect)')
        res.destroy()
        return
      }
      if (batch.length === 0) {
        // Appends are synchronous: nothing can be appended between after() and here.
        await new Promise<void>((resolve) => {
          wake = resolve
        })
        continue
      }
      for (const e of batch) {
        res.write(`event: ${e.kind}\nid: ${log.cursor(e.pos)}\ndata: ${e.json}\n\n`)
        pos = e.pos
      }
      if (!(await drained(res))) return
    }
  }
  pump().catch((err: unknown) => {
    deps.logger.warn({ err }, 'feed stream failed')
    res.destroy()
  })
}

/** `GET /admin/v1/feed/snapshot?paged=true`: the paged snapshot as NDJSON. */
export async function sendPagedSnapshot(ctx: FeedStreamContext, request: FastifyRequest, reply: FastifyReply): Promise<void> {
  if (ctx.closing()) throw new Unavailable('the control plane is shutting down')
  // A read that starts after this request: a Redis gateway merges it with what it heard since it subscribed.
  const snap = ctx.snapshots.fresh(pageFormat(request))
  reply.hijack()
  const res = reply.raw
  res.writeHead(200, { 'content-type': 'application/x-ndjson; charset=utf-8', 'cache-control': 'no-store' })
  ctx.streams.add(res)
  res.on('close', () => ctx.streams.delete(res))
  try {
    const log = ctx.hub?.log
    const written = await writeSnapshot(res, snap, {
      begin: (json) => `{"begin":${json}}\n`,
      page: (kind, json) => `{"${kind}":${json}}\n`,
      end: (json) => `{"end":${JSON.stringify({ ...(JSON.parse(json) as object), cursor: log ? log.cursor(snap.pos) : null })}}\n`,
    })
    if (written) res.end()
  } catch (err) {
    ctx.deps.logger.warn({ err, ip: request.ip }, 'paged feed snapshot failed')
    res.destroy()
  }
}
