import type { FeedSnapshot, FeedSummary } from '../../control-plane/index.js'
import type { ControlPlaneClient } from '../control-plane-client.js'
import { MalformedSnapshot, parseSnapshot, parseSummary, SnapshotAssembler } from './parse.js'

/** Largest single NDJSON line accepted (a page is about 100–200 KB). */
const MAX_LINE_BYTES = 8 * 1024 * 1024
const SNAPSHOT_PATH = '/admin/v1/feed/snapshot'
const NEWLINE = 0x0a

/**
 * Loads the control plane's feed snapshot page by page
 * (`GET /admin/v1/feed/snapshot?paged=true&v=3`, NDJSON with tuple pages,
 * src/control-plane/admin/feed-stream.ts), validating each page as it
 * arrives, so its size is bounded by the gateway's memory, not by one
 * response. A control plane that does not page answers the whole snapshot
 * as JSON, which is validated as a whole. Resolves null when the snapshot
 * is malformed; rejects when unreachable, on a non-2xx answer, or when the
 * stream ends before its `end` line.
 */
export async function fetchPagedSnapshot(client: ControlPlaneClient, timeoutMs = 60_000): Promise<FeedSnapshot | null> {
  const res = await fetch(client.url(`${SNAPSHOT_PATH}?paged=true&v=3`), {
    headers: client.headers({ accept: 'application/x-ndjson, application/json' }),
    signal: AbortSignal.timeout(timeoutMs),
  })
  if (!res.ok || !res.body) {
    await res.body?.cancel().catch(() => {})
    throw new Error(`feed snapshot answered ${res.status}`)
  }
  if (!(res.headers.get('content-type') ?? '').includes('ndjson')) return parseSnapshot(JSON.parse(await res.text()) as unknown)
  const assembler = new SnapshotAssembler()
  let snapshot: FeedSnapshot | undefined
  const onLine = (line: string): void => {
    if (line === '') return
    const rec = JSON.parse(line) as Record<string, unknown>
    if (rec.begin !== undefined) assembler.opening(rec.begin)
    else if (rec.revocations !== undefined) assembler.page('revocations', rec.revocations)
    else if (rec.agents !== undefined) assembler.page('agents', rec.agents)
    else if (rec.end !== undefined) snapshot = assembler.end(rec.end)
  }
  try {
    await forEachLine(res.body as unknown as AsyncIterable<Uint8Array>, onLine)
  } catch (err) {
    if (err instanceof SyntaxError || err instanceof MalformedSnapshot) return null
    throw err
  }
  if (!snapshot) throw new Error('feed snapshot incomplete')
  return snapshot
}

/**
 * The control plane's FeedSummary (`GET /admin/v1/feed/snapshot?summary=true`):
 * the snapshot without its revocations, for the periodic check for missed
 * events. A control plane that does not know `summary` answers its whole
 * snapshot, which serves as well. Resolves null when malformed; rejects
 * when unreachable or on a non-2xx answer.
 */
export async function fetchFeedSummary(client: ControlPlaneClient, timeoutMs = 60_000): Promise<FeedSummary | null> {
  const res = await fetch(client.url(`${SNAPSHOT_PATH}?summary=true`), {
    headers: client.headers({ accept: 'application/json' }),
    signal: AbortSignal.timeout(timeoutMs),
  })
  if (!res.ok) {
    await res.body?.cancel().catch(() => {})
    throw new Error(`feed summary answered ${res.status}`)
  }
  const body = JSON.parse(await res.text()) as unknown
  return typeof body === 'object' && body !== null && 'summary' in body ? parseSummary(body) : parseSnapshot(body)
}

/**
 * Calls `onLine` with each newline-terminated line of a byte stream (and
 * the unterminated rest). Newlines are looked for in each chunk's bytes
 * only, and a line's pieces are decoded once it is whole: linear in the
 * stream's size, where re-scanning a growing string for the next newline
 * took a second for 100,000 revocations.
 */
async function forEachLine(body: AsyncIterable<Uint8Array>, onLine: (line: string) => void): Promise<void> {
  const decoder = new TextDecoder()
  let pieces: Uint8Array[] = []
  let pending = 0
  const flush = (last: Uint8Array): void => {
    pieces.push(last)
    onLine(decoder.decode(pieces.length === 1 ? pieces[0] : Buffer.concat(pieces)))
    pieces = []
    pending = 0
  }
  for await (const chunk of body) {
    let from = 0
    for (let nl = chunk.indexOf(NEWLINE); nl >= 0; nl = chunk.indexOf(NEWLINE, from)) {
      flush(chunk.subarray(from, nl))
      from = nl + 1
    }
    if (from < chunk.length) {
      pieces.push(chunk.subarray(from))
      pending += chunk.length - from
      if (pending > MAX_LINE_BYTES) throw new Error('feed snapshot line too long')
    }
  }
  if (pieces.length > 0) flush(new Uint8Array(0))
}
