import type { ControlPlaneClient } from '../control-plane-client.js'

/** Largest single NDJSON line accepted (a page is about 200 KB). */
const MAX_LINE_BYTES = 8 * 1024 * 1024
const SNAPSHOT_PATH = '/admin/v1/feed/snapshot'

/**
 * Loads the control plane's feed snapshot page by page
 * (`GET /admin/v1/feed/snapshot?paged=true`, NDJSON, src/control-plane/admin/feed-stream.ts)
 * and returns it assembled as the unpaged endpoint's JSON (for parseSnapshot),
 * so its size is bounded by the gateway's memory, not by one response.
 * A control plane that does not page answers the whole snapshot as JSON,
 * which is returned as is. Rejects when unreachable, on a non-2xx answer, or
 * when the stream ends before its `end` line.
 */
export async function fetchPagedSnapshot(client: ControlPlaneClient, timeoutMs = 60_000): Promise<unknown> {
  const res = await fetch(client.url(`${SNAPSHOT_PATH}?paged=true`), {
    headers: client.headers({ accept: 'application/x-ndjson, application/json' }),
    signal: AbortSignal.timeout(timeoutMs),
  })
  if (!res.ok || !res.body) {
    await res.body?.cancel().catch(() => {})
    throw new Error(`feed snapshot answered ${res.status}`)
  }
  if (!(res.headers.get('content-type') ?? '').includes('ndjson')) return JSON.parse(await res.text()) as unknown
  let begin: Record<string, unknown> | undefined
  const revocations: unknown[] = []
  const agents: unknown[] = []
  let end: Record<string, unknown> | undefined
  const onLine = (line: string): void => {
    if (line === '') return
    const rec = JSON.parse(line) as Record<string, unknown>
    if (rec.begin && typeof rec.begin === 'object') begin = rec.begin as Record<string, unknown>
    else if (Array.isArray(rec.revocations)) for (const r of rec.revocations) revocations.push(r)
    else if (Array.isArray(rec.agents)) for (const a of rec.agents) agents.push(a)
    else if (rec.end && typeof rec.end === 'object') end = rec.end as Record<string, unknown>
  }
  const decoder = new TextDecoder()
  let buffered = ''
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    buffered += decoder.decode(chunk, { stream: true })
    let nl: number
    while ((nl = buffered.indexOf('\n')) >= 0) {
      onLine(buffered.slice(0, nl))
      buffered = buffered.slice(nl + 1)
    }
    if (buffered.length > MAX_LINE_BYTES) throw new Error('feed snapshot line too long')
  }
  onLine(buffered)
  // The closing line carries seq and the entry counts (the snapshot is sent while it is read).
  if (!begin || !end || end.revocations !== revocations.length || end.agents !== agents.length) throw new Error('feed snapshot incomplete')
  return { ...begin, seq: end.seq, revocations, agents }
}
