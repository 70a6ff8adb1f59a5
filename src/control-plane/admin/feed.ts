/**
 * The gateway feed, as src/control-plane/feed/events.ts fixes it:
 * - `GET /admin/v1/feed/snapshot` → FeedSnapshot;
 * - `GET /admin/v1/revocations/stream`: SSE, `event: snapshot` first, then
 *   one event per change (`id:` = seq for revocations), `: ping` every 15 s;
 * - `POST /admin/v1/gateways/acks` `{gateway_id, seq}`;
 * - `GET /admin/v1/gateways`: each gateway's acknowledged seq and lag.
 * The feed carries every tenant, so it needs a global gateway or admin token.
 */
import type { ServerResponse } from 'node:http'
import type { FastifyInstance } from 'fastify'
import { AegisError, Unavailable } from '../../errors.js'
import { isFeedHub } from '../feed/publisher-sse.js'
import { agentTuple, type FeedEvent } from '../feed/events.js'
import type { ControlPlaneDeps } from '../deps.js'
import { buildFeedSnapshot, buildFeedSummary, SnapshotCache } from '../revocation/snapshot.js'
import { sendPagedSnapshot, streamPagedFeed, wantsPagedSnapshot, wantsPagedStream, type FeedStreamContext } from './feed-stream.js'
import { TAGS, allow, body, int, query, str } from './schemas.js'
import { principal } from './validate.js'
import { epochSeconds } from '../../lib/clock.js'

const PING_MS = 15_000
/** A subscriber this far behind is cut off; it reconnects and reloads the snapshot. */
const MAX_BUFFERED_BYTES = 8 * 1024 * 1024
const AckBody = body({ gateway_id: str(128, '^[A-Za-z0-9._:-]{1,128}$'), seq: int(0, Number.MAX_SAFE_INTEGER) }, ['gateway_id', 'seq'])
const SnapshotQuery = query({
  paged: { type: 'string', description: '`true` (or `1`): the paged NDJSON snapshot' },
  summary: {
    type: 'string',
    description:
      '`true` (or `1`): `{"summary": {seq, agents, policies, generatedAt}}`, the snapshot without its revocations (agents as tuples), ' +
      "for a gateway's periodic check for missed events",
  },
  v: {
    type: 'string',
    description:
      'with `paged`, `3`: page entries as tuples, revocations `[seq, type, value, tenant, agentId, createdAt, expiresAt]` ' +
      'and agents `[tenant, agentId, capabilityHash]`',
  },
})
const StreamQuery = query({
  v: { type: 'string', description: '`2`: the paged, resumable stream; `3`: the same with page entries as tuples' },
  last_event_id: { type: 'string', description: 'resume point when the Last-Event-ID header cannot be sent' },
})

function sseEvent(e: FeedEvent): string {
  const id = e.kind === 'revocation' ? `id: ${e.revocation.seq}\n` : e.kind === 'revocation_lifted' ? `id: ${e.seq}\n` : ''
  return `event: ${e.kind}\n${id}data: ${JSON.stringify(e)}\n\n`
}

export interface FeedRoutesOptions {
  /** Ping interval of the SSE stream (ms); default 15 s. */
  pingMs?: number
}

export async function feedRoutes(app: FastifyInstance, deps: ControlPlaneDeps, opts: FeedRoutesOptions = {}): Promise<void> {
  const reader = allow(['admin', 'gateway'])
  const globalReader = allow(['admin', 'gateway'], { globalOnly: 'the feed carries every tenant: use a global gateway or admin token' })
  const streams = new Set<ServerResponse>()
  let closing = false
  app.addHook('preClose', async () => {
    closing = true
    for (const res of streams) res.end()
    streams.clear()
  })

  // The paged, resumable feed (feed-stream.ts): ?v=2 on the stream, ?paged=true on the snapshot.
  const hubOrNull = isFeedHub(deps.feed) ? deps.feed : null
  const snapshots = new SnapshotCache(deps, hubOrNull?.log ?? null)
  app.addHook('onClose', async () => snapshots.close())
  const paged = <H extends FeedStreamContext['hub']>(hub: H): FeedStreamContext & { hub: H } => ({
    deps,
    hub,
    snapshots,
    streams,
    closing: () => closing,
    pingMs: opts.pingMs ?? PING_MS,
  })

  app.get(
    '/feed/snapshot',
    {
      config: globalReader,
      schema: {
        tags: [TAGS.feed],
        summary: "Everything a gateway needs at start: revocations in force, agents' capability hashes, policies",
        querystring: SnapshotQuery,
      },
    },
    async (request, reply) => {
      if (wantsPagedSnapshot(request)) return sendPagedSnapshot(paged(hubOrNull), request, reply)
      reply.header('cache-control', 'no-store')
      const summary = (request.query as { summary?: string }).summary
      if (summary === 'true' || summary === '1') {
        const s = await buildFeedSummary(deps)
        return { summary: { ...s, agents: s.agents.map(agentTuple) } }
      }
      return buildFeedSnapshot(deps)
    },
  )

  app.get(
    '/revocations/stream',
    { config: globalReader, schema: { tags: [TAGS.feed], summary: 'Server-sent events: the snapshot, then every change', querystring: StreamQuery } },
    async (request, reply) => {
      const hub = deps.feed
      if (!isFeedHub(hub)) throw new AegisError('server_error', "this control plane's feed publisher cannot be followed")
      if (wantsPagedStream(request)) return streamPagedFeed(paged(hub), request, reply)
      // Subscribe before reading the snapshot, so nothing between the two is lost.
      const early: FeedEvent[] = []
      let res: ServerResponse | null = null
      const write = (chunk: string): void => {
        if (!res || res.destroyed) return
        res.write(chunk)
        if (res.writableLength > MAX_BUFFERED_BYTES) {
          deps.logger.warn({ ip: request.ip }, 'feed subscriber too slow; disconnected')
          res.destroy()
        }
      }
      let snapshotSeq = 0
      const unsubscribe = hub.subscribe((e) => {
        if (!res) early.push(e)
        else write(sseEvent(e))
      })
      let snapshot: Awaited<ReturnType<typeof buildFeedSnapshot>>
      try {
        snapshot = await buildFeedSnapshot(deps)
      } catch (err) {
        unsubscribe()
        throw err
      }
      snapshotSeq = snapshot.seq
      if (closing) {
        // A stream opened now would hold close() open; the gateway reconnects to another control plane or after restart.
        unsubscribe()
        throw new Unavailable('the control plane is shutting down')
      }
      reply.hijack()
      res = reply.raw
      res.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-store',
        connection: 'keep-alive',
        'x-accel-buffering': 'no',
      })
      streams.add(res)
      const ping = setInterval(() => write(': ping\n\n'), opts.pingMs ?? PING_MS)
      const cleanup = (): void => {
        clearInterval(ping)
        unsubscribe()
        if (res) streams.delete(res)
      }
      res.on('close', cleanup)
      write(`event: snapshot\nid: ${snapshot.seq}\ndata: ${JSON.stringify(snapshot)}\n\n`)
      for (const e of early) {
        if (e.kind === 'revocation' && e.revocation.seq <= snapshotSeq) continue
        write(sseEvent(e))
      }
      early.length = 0
    },
  )

  app.post<{ Body: { gateway_id: string; seq: number } }>(
    '/gateways/acks',
    {
      config: { admin: { ...globalReader.admin, json: true } },
      schema: { tags: [TAGS.feed], summary: 'A gateway reports the last feed seq it applied', body: AckBody },
    },
    async (request, reply) => {
      await deps.store.gatewayAcks.put({ gatewayId: request.body.gateway_id, seq: request.body.seq, updatedAt: deps.clock.now() })
      return reply.code(204).send()
    },
  )

  app.get('/gateways', { config: reader, schema: { tags: [TAGS.feed], summary: "Each gateway's acknowledged seq and lag" } }, async (request) => {
    principal(request)
    const now = deps.clock.now()
    const [acks, lastSeq] = await Promise.all([deps.store.gatewayAcks.list(), deps.store.revocations.lastSeq()])
    const minSeq = acks.reduce((m, a) => Math.min(m, a.seq), lastSeq)
    const pending = minSeq < lastSeq ? await deps.store.revocations.since(minSeq) : []
    return {
      last_seq: lastSeq,
      gateways: acks.map((a) => {
        // Lag in time: how long the oldest entry this gateway has not applied has existed.
        const oldest = a.seq < lastSeq ? pending.find((r) => r.seq > a.seq) : undefined
        return {
          gateway_id: a.gatewayId,
          seq: a.seq,
          lag: Math.max(0, lastSeq - a.seq),
          lag_seconds: oldest ? Math.max(0, (now - oldest.createdAt) / 1000) : 0,
          updated_at: epochSeconds(a.updatedAt),
          last_seen_seconds: Math.max(0, (now - a.updatedAt) / 1000),
        }
      }),
    }
  })
}
