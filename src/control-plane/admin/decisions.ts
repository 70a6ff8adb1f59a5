/**
 * The decision log (docs/reference.md "Audit"), control-plane side:
 * - `POST /admin/v1/decisions` (gateway or admin token, no console session):
 *   a gateway uploads a batch of its decisions, gzip-compressed JSON
 *   (`Content-Encoding: gzip`), as OPA's decision-log plugin uploads to a log
 *   service. Bounded before (compressed bytes) and after (decompressed bytes,
 *   JSON depth, records per batch) decompression. Records are keyed by the
 *   gateway's (ts, id), so a retried batch stores nothing twice.
 * - `GET /admin/v1/decisions?tenant=&agent_id=&tool=&decision=&enforced=&since=&until=&limit=&cursor=`:
 *   newest first, tenant-scoped like `GET /admin/v1/audit`.
 * - Retention: every `decisionLog.pruneIntervalSeconds`, one control plane
 *   at a time (the store's named lock) deletes what is older than
 *   `decisionLog.retentionHours`.
 */
import { gunzip } from 'node:zlib'
import { Counter } from 'prom-client'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { AegisError, InvalidRequest } from '../../errors.js'
import { jsonDepth } from '../../lib/json-limits.js'
import type { DecisionQuery, DecisionRecord, DecisionRecordType } from '../../store/types.js'
import type { ControlPlaneDeps } from '../deps.js'
import { ID_PATTERN, TAGS, allow, body, int, nullableStr, query, str, strArray, type JsonSchema } from './schemas.js'

/** Compressed upload bound (bytes): above the gateway's 4 MiB of JSON per batch even if it did not compress. */
export const MAX_UPLOAD_BYTES = 5 * 1024 * 1024
/** Decompressed upload bound (bytes): a gzip bomb stops here. */
export const MAX_UPLOAD_DECOMPRESSED_BYTES = 8 * 1024 * 1024
/** Records per upload. */
export const MAX_UPLOAD_RECORDS = 1000
/** A decision time further ahead than this is refused: it would outlive retention by as much. */
const MAX_FUTURE_MS = 24 * 3600 * 1000
const DEFAULT_LIMIT = 100
const MAX_LIMIT = 1000
/** Rows deleted per statement by the retention job. */
const PRUNE_CHUNK = 5000
const RETENTION_LOCK = 'decision-log-retention'

const RECORD_ID = '^[0-9a-f]{32}$'
const TRACE_ID = '^[0-9a-f]{32}$'
const DECISION = '^[a-z_]{1,32}$'
const CURSOR_RE = /^(\d{1,16})\.([0-9a-f]{32})$/
const TYPES: readonly DecisionRecordType[] = ['decision', 'token.refused', 'token.replayed', 'decision.unavailable']

/** One record as gateways upload it and the API answers it (snake_case, units in the names). */
export interface WireDecision {
  id: string
  ts_ms: number
  type: DecisionRecordType
  mode: string
  decision: string
  gateway_id?: string
  received_at_ms?: number
  tenant?: string | null
  agent_id?: string | null
  client_id?: string | null
  jti?: string | null
  tool?: string | null
  resource?: string | null
  enforced?: boolean | null
  reasons?: string[]
  policy_version?: string | null
  policy_ids?: string[] | null
  risk?: string | null
  degraded?: string | null
  error?: string | null
  latency_ms?: number | null
  trace_id?: string | null
  params?: Record<string, unknown> | null
}

/** An upload: `POST /admin/v1/decisions`. */
export interface DecisionUpload {
  gateway_id: string
  records: WireDecision[]
}

const nullableBool: JsonSchema = { type: ['boolean', 'null'] }
const RecordSchema = body(
  {
    id: str(32, RECORD_ID, 32),
    ts_ms: int(0, Number.MAX_SAFE_INTEGER),
    type: { type: 'string', enum: TYPES },
    mode: str(16, '^[a-z_]{1,16}$'),
    decision: str(32, DECISION),
    tenant: nullableStr(64, ID_PATTERN),
    agent_id: nullableStr(64, ID_PATTERN),
    client_id: nullableStr(256),
    jti: nullableStr(256),
    tool: nullableStr(256),
    resource: nullableStr(1024),
    enforced: nullableBool,
    reasons: strArray(32, str(1024, undefined, 0)),
    policy_version: nullableStr(128),
    policy_ids: { type: ['array', 'null'], maxItems: 64, items: str(256) },
    risk: nullableStr(16),
    degraded: nullableStr(16),
    error: nullableStr(1024),
    latency_ms: { type: ['number', 'null'], minimum: 0, maximum: 3_600_000 },
    trace_id: nullableStr(32, TRACE_ID),
    params: { type: ['object', 'null'], maxProperties: 64, description: 'the sanitized parameters (the gateway bounds them to about 1 KiB)' },
  },
  ['id', 'ts_ms', 'type', 'mode', 'decision'],
)

const UploadSchema = body(
  {
    gateway_id: str(128, '^[A-Za-z0-9._:-]{1,128}$'),
    records: { type: 'array', minItems: 1, maxItems: MAX_UPLOAD_RECORDS, items: RecordSchema },
  },
  ['gateway_id', 'records'],
)

const QuerySchema = query(
  {
    tenant: { type: 'string', pattern: ID_PATTERN },
    agent_id: { type: 'string', pattern: ID_PATTERN },
    tool: { type: 'string', minLength: 1, maxLength: 256 },
    decision: { type: 'string', pattern: DECISION, description: 'allow, deny, approval_needed, sanitize; refused, replayed, unavailable for refusals' },
    enforced: { type: 'string', enum: ['true', 'false'], description: 'false: shadow decisions (would-deny included)' },
    since: { type: 'string', maxLength: 40, description: 'epoch seconds or an RFC 3339 date-time (inclusive)' },
    until: { type: 'string', maxLength: 40, description: 'epoch seconds or an RFC 3339 date-time (exclusive)' },
    limit: { type: 'string', pattern: '^\\d{1,4}$', description: `1 to ${MAX_LIMIT} (default ${DEFAULT_LIMIT})` },
    cursor: { type: 'string', pattern: CURSOR_RE.source, description: 'next_cursor of the previous page' },
  },
  false,
)

interface RawQuery {
  tenant?: string
  agent_id?: string
  tool?: string
  decision?: string
  enforced?: 'true' | 'false'
  since?: string
  until?: string
  limit?: string
  cursor?: string
}

/** Epoch ms from an integer (epoch seconds, like every time the admin API takes) or an RFC 3339 date-time. */
function parseTime(name: string, v: string): number {
  if (/^\d{1,12}$/.test(v)) return Number(v) * 1000
  if (/^\d{4}-\d{2}-\d{2}T/.test(v)) {
    const ms = Date.parse(v)
    if (Number.isFinite(ms)) return ms
  }
  throw new InvalidRequest(`${name} must be epoch seconds or an RFC 3339 date-time`)
}

/** The repository query of a validated query string (limit range and dates are what the schema cannot say). */
export function parseDecisionQuery(q: RawQuery): DecisionQuery {
  const out: DecisionQuery = { limit: DEFAULT_LIMIT }
  if (q.tenant !== undefined) out.tenant = q.tenant
  if (q.agent_id !== undefined) out.agentId = q.agent_id
  if (q.tool !== undefined) out.tool = q.tool
  if (q.decision !== undefined) out.decision = q.decision
  if (q.enforced !== undefined) out.enforced = q.enforced === 'true'
  if (q.since !== undefined) out.since = parseTime('since', q.since)
  if (q.until !== undefined) out.until = parseTime('until', q.until)
  if (q.limit !== undefined) {
    const n = Number(q.limit)
    if (n < 1 || n > MAX_LIMIT) throw new InvalidRequest(`limit must be an integer from 1 to ${MAX_LIMIT}`)
    out.limit = n
  }
  if (q.cursor !== undefined) {
    const m = CURSOR_RE.exec(q.cursor)!
    out.after = { ts: Number(m[1]), id: m[2]! }
  }
  return out
}

/** A stored record on the wire. */
export function decisionToWire(r: DecisionRecord): WireDecision {
  return {
    id: r.id,
    ts_ms: r.ts,
    received_at_ms: r.receivedAt,
    gateway_id: r.gatewayId,
    type: r.type,
    mode: r.mode,
    tenant: r.tenant,
    agent_id: r.agentId,
    client_id: r.clientId,
    jti: r.jti,
    tool: r.tool,
    resource: r.resource,
    decision: r.decision,
    enforced: r.enforced,
    reasons: r.reasons,
    policy_version: r.policyVersion,
    policy_ids: r.policyIds,
    risk: r.risk,
    degraded: r.degraded,
    error: r.error,
    latency_ms: r.latencyMs,
    trace_id: r.traceId,
    params: r.params,
  }
}

function fromWire(w: WireDecision, gatewayId: string, tenant: string | null, receivedAt: number): DecisionRecord {
  return {
    id: w.id,
    ts: w.ts_ms,
    receivedAt,
    gatewayId,
    type: w.type,
    mode: w.mode,
    tenant,
    agentId: w.agent_id ?? null,
    clientId: w.client_id ?? null,
    jti: w.jti ?? null,
    tool: w.tool ?? null,
    resource: w.resource ?? null,
    decision: w.decision,
    enforced: w.enforced ?? null,
    reasons: w.reasons ?? [],
    policyVersion: w.policy_version ?? null,
    policyIds: w.policy_ids ?? null,
    risk: w.risk ?? null,
    degraded: w.degraded ?? null,
    error: w.error ?? null,
    latencyMs: w.latency_ms ?? null,
    traceId: w.trace_id ?? null,
    params: w.params ?? null,
  }
}

/**
 * Parses an upload body: gunzip when `Content-Encoding: gzip` (bounded
 * output), then JSON with the server's depth bound. The compressed size is
 * bounded by the route's `bodyLimit` before this runs.
 */
function uploadParser(maxDepth: number) {
  // Each branch ends by calling `done` (a `return done(…)` names the branch's end, not a value).
  return (request: FastifyRequest, raw: Buffer, done: (err: Error | null, body?: unknown) => void) => {
    const parse = (buf: Buffer) => {
      if (buf.length > MAX_UPLOAD_DECOMPRESSED_BYTES) return done(new AegisError('payload_too_large', 'decompressed body too large'))
      let parsed: unknown
      try {
        parsed = JSON.parse(buf.toString('utf8'))
      } catch {
        return done(new InvalidRequest('malformed JSON body'))
      }
      if (jsonDepth(parsed, maxDepth) > maxDepth) return done(new InvalidRequest(`JSON nested deeper than ${maxDepth}`))
      done(null, parsed)
    }
    const encoding = (request.headers['content-encoding'] ?? 'identity').toLowerCase().trim()
    if (encoding === 'identity') return parse(raw)
    if (encoding !== 'gzip') return done(new AegisError('unsupported_media_type', 'Content-Encoding must be gzip or identity'))
    // In libuv's pool, off the event loop; maxOutputLength stops a bomb before it is inflated.
    gunzip(raw, { maxOutputLength: MAX_UPLOAD_DECOMPRESSED_BYTES }, (err, out) => {
      if (err) {
        return done(
          (err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE'
            ? new AegisError('payload_too_large', 'decompressed body too large')
            : new InvalidRequest('body is not valid gzip'),
        )
      }
      parse(out)
    })
  }
}

/** The decision log's routes and retention job; call inside the `/admin/v1` scope. */
export async function decisionRoutes(app: FastifyInstance, deps: ControlPlaneDeps): Promise<void> {
  const { store, clock, config, logger } = deps
  const stored = new Counter({
    name: 'aegis_decision_log_stored_total',
    help: 'Decision-log records stored (duplicates of a retried upload not counted)',
    registers: [deps.metrics.registry],
  })

  app.get(
    '/decisions',
    {
      config: allow(['admin']),
      schema: { tags: [TAGS.decisions], summary: 'Page through the decision log, newest first (a tenant admin: its tenant)', querystring: QuerySchema },
    },
    async (request, reply) => {
      const principal = request.adminPrincipal!
      const q = parseDecisionQuery(request.query as RawQuery)
      if (principal.tenant !== null) {
        if (q.tenant !== undefined && q.tenant !== principal.tenant) throw new AegisError('forbidden', "outside this token's tenant")
        q.tenant = principal.tenant
      }
      const rows = await store.decisions.query(q)
      reply.header('cache-control', 'no-store')
      const last = rows[rows.length - 1]
      return { decisions: rows.map(decisionToWire), next_cursor: rows.length === q.limit && last ? `${last.ts}.${last.id}` : null }
    },
  )

  await app.register(async (ingest) => {
    // Only this scope reads gzip bodies; every other admin route keeps the server's JSON parser.
    ingest.removeContentTypeParser('application/json')
    ingest.addContentTypeParser('application/json', { parseAs: 'buffer' }, uploadParser(config.limits.jsonDepth))
    ingest.post<{ Body: DecisionUpload }>(
      '/decisions',
      {
        bodyLimit: MAX_UPLOAD_BYTES,
        // No console session: gateways (or automation) upload with a bearer token.
        config: allow(['gateway', 'admin'], { sessions: false }),
        schema: { tags: [TAGS.decisions], summary: 'A gateway uploads a batch of decisions (gzip JSON); a retried batch is stored once', body: UploadSchema },
      },
      async (request, reply) => {
        const principal = request.adminPrincipal!
        const now = clock.now()
        const { gateway_id: gatewayId, records } = request.body
        const rows = records.map((w) => {
          if (w.ts_ms > now + MAX_FUTURE_MS) throw new InvalidRequest("a record is dated more than a day ahead: check the gateway's clock")
          let tenant = w.tenant ?? null
          // A tenant's own gateway token uploads for its tenant only; what it refused before knowing a tenant is that tenant's.
          if (principal.tenant !== null) {
            if (tenant !== null && tenant !== principal.tenant) throw new AegisError('forbidden', "a record names a tenant outside this token's tenant")
            tenant = principal.tenant
          }
          return fromWire(w, gatewayId, tenant, now)
        })
        const n = await store.decisions.append(rows)
        stored.inc(n)
        reply.code(202).header('cache-control', 'no-store')
        return { accepted: rows.length, stored: n, duplicates: rows.length - n }
      },
    )
  })

  const retentionMs = config.decisionLog.retentionHours * 3600 * 1000
  let running: Promise<void> | null = null
  let closed = false
  const prune = (): Promise<void> => {
    running ??= (async () => {
      try {
        await store.tryWithLock(RETENTION_LOCK, async () => {
          const before = clock.now() - retentionMs
          let deleted = 0
          for (;;) {
            const n = await store.decisions.prune(before, PRUNE_CHUNK)
            deleted += n
            if (n < PRUNE_CHUNK || closed) break
          }
          if (deleted > 0) logger.debug({ deleted }, 'decision log: expired records deleted')
        })
      } catch (err) {
        logger.warn({ err }, 'decision log retention failed; retried at the next interval')
      } finally {
        running = null
      }
    })()
    return running
  }
  const timer = setInterval(() => {
    void prune()
  }, config.decisionLog.pruneIntervalSeconds * 1000)
  timer.unref()
  app.addHook('onClose', async () => {
    closed = true
    clearInterval(timer)
    await running
  })
}
