/**
 * `npm run bench -- log-queries`: the first page of every filter combination
 * of `GET /admin/v1/audit` and `GET /admin/v1/decisions`, through the store's
 * own query, on PostgreSQL with AEGIS_BENCH_LOG_ROWS rows in each table
 * (default 10,000,000). It creates a database of its own, applies the
 * migrations, fills both tables with INSERT … SELECT from generate_series
 * (indexes dropped during the fill and rebuilt from their definitions, so
 * the measured indexes are exactly the migrations'), ANALYZEs, measures, and
 * drops the database. A fill of 10 million rows per table takes several
 * minutes on 2 cores.
 */
import pg from 'pg'
import { openPostgresStore } from '../src/store/postgres/index.js'
import { AUDIT_TIME_MARKS_FROM_EVENTS } from '../src/store/sql/migrations.js'
import { auditQuerySql, decisionQuerySql } from '../src/store/sql/repositories.js'
import type { AuditQuery, DecisionQuery, Store } from '../src/store/types.js'
import { percentiles } from './util.js'

export interface LogQueryFigure {
  table: 'audit_events' | 'decisions'
  filter: string
  p50Ms: number
  p99Ms: number
  samples: number
  /** The plan's scan nodes, e.g. `Index Scan using audit_events_tenant_type`. */
  plan: string
}

const TENANTS = 40
const HOUR = 3_600_000

// Events 250 ms apart (10M ≈ 29 days); tenants skewed towards t0 (t5 holds ~4 %, t39 ~0.4 %); 3 % without tenant.
const AUDIT_FILL =
  `
INSERT INTO audit_events (id, chain_id, chain_seq, type, tenant, actor, subject, data, ts, prev_hash, hash)
SELECT i, 'cp-' || (i % 3), i / 3 + 1,
  (ARRAY['decision','decision','decision','decision','token.issued','token.issued','token.issued','auth.failed','token.revoked',
    'approval.requested','approval.approved','approval.denied','key.rotated','policy.activated','admin.agent_created',` +
  `'admin.console_login'])[1 + (r * 16)::int % 16],
  CASE WHEN r2 < 0.03 THEN NULL ELSE 't' || floor(${TENANTS} * r2 * r2)::int END,
  'agent-' || (i % 500), 'sub-' || (i % 4999), '{"n":' || i || '}',
  $2::bigint + i * 250 + (i % 7) * 300, h || h, h || h
FROM (SELECT i::bigint AS i, random() AS r, random() AS r2, md5(i::text) AS h FROM generate_series(1, $1::bigint) i) s`

// Decisions 250 ms apart by gateway time; 30 tools, 50 agents per tenant; t3 and t7 in shadow mode (enforced false); 2 % refused tokens.
const DECISIONS_FILL = `
INSERT INTO decisions (ts, id, received_at, gateway_id, type, mode, tenant, agent_id, client_id, jti, tool, resource, decision, enforced,
  reasons, policy_version, policy_ids, risk, degraded, error, latency_ms, trace_id, params)
SELECT $2::bigint + i * 250, h, $2::bigint + i * 250 + 800, 'gw-' || (i % 4),
  CASE WHEN refused THEN 'token.refused' ELSE 'decision' END, 'authorize', tenant,
  'agent-' || (i % 50), 'client-' || (i % 50), h, CASE WHEN refused THEN NULL ELSE 'tool.' || floor(30 * r3 * r3)::int END, NULL,
  CASE WHEN refused THEN 'refused' WHEN r < 0.85 THEN 'allow' WHEN r < 0.95 THEN 'deny' WHEN r < 0.99 THEN 'approval_needed' ELSE 'sanitize' END,
  CASE WHEN refused THEN NULL ELSE tenant NOT IN ('t3', 't7') END,
  '[]', 'v1', '["p1"]', NULL, NULL, NULL, 0.4, NULL, '{"amount":1}'
FROM (SELECT i, r, r3, refused, md5(i::text) AS h, CASE WHEN r2 < 0.03 THEN NULL ELSE 't' || floor(${TENANTS} * r2 * r2)::int END AS tenant
      FROM (SELECT i::bigint AS i, random() AS r, random() AS r2, random() AS r3, random() < 0.02 AS refused FROM generate_series(1, $1::bigint) i) a) s`

/** Every secondary index of `table` that no constraint owns, as its CREATE INDEX statement. */
async function looseIndexes(c: pg.Client, table: string): Promise<Array<{ name: string; def: string }>> {
  const r = await c.query<{ name: string; def: string }>(
    `SELECT i.relname AS name, pg_get_indexdef(i.oid) AS def FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
      WHERE x.indrelid = $1::regclass AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.oid)`,
    [table],
  )
  return r.rows
}

async function fill(url: string, table: string, fillSql: string, rows: number, start: number): Promise<void> {
  const c = new pg.Client({ connectionString: url })
  await c.connect()
  try {
    await c.query("SET maintenance_work_mem = '512MB'")
    const indexes = await looseIndexes(c, table)
    for (const i of indexes) await c.query(`DROP INDEX ${i.name}`)
    await c.query(fillSql, [rows, start])
    for (const i of indexes) await c.query(i.def)
    if (table === 'audit_events') {
      await c.query("SELECT setval(pg_get_serial_sequence('audit_events', 'id'), $1::bigint)", [rows])
      // The fill bypassed the store's append, which keeps the time marks: build them as migration 15 does.
      await c.query('DELETE FROM audit_time_marks')
      await c.query(AUDIT_TIME_MARKS_FROM_EVENTS)
      await c.query('ANALYZE audit_time_marks')
    }
    await c.query(`VACUUM ANALYZE ${table}`)
  } finally {
    await c.end()
  }
}

/** Runs `fn` until 50 samples or 5 s (at least 3), after 3 unmeasured warm-up runs. */
async function time(fn: () => Promise<unknown>): Promise<{ p50: number; p99: number; n: number }> {
  for (let i = 0; i < 3; i++) await fn()
  const samples: number[] = []
  const end = performance.now() + 5000
  while (samples.length < 3 || (samples.length < 50 && performance.now() < end)) {
    const t = performance.now()
    await fn()
    samples.push(performance.now() - t)
  }
  const p = percentiles(samples)
  return { p50: p.p50, p99: p.p99, n: samples.length }
}

/** The scan nodes of a plan, outermost first, e.g. `Index Scan using x` or `Sort < Bitmap Heap Scan`. */
function planNodes(node: Record<string, unknown>): string[] {
  const type = String(node['Node Type'])
  const own = type === 'Limit' ? [] : [node['Index Name'] ? `${type} using ${String(node['Index Name'])}` : type]
  const children = (node.Plans as Array<Record<string, unknown>> | undefined) ?? []
  return [...own, ...children.flatMap(planNodes)]
}

/** `EXPLAIN (FORMAT JSON)` of a statement with `?` placeholders. */
export async function explain(c: pg.ClientBase, text: string, args: readonly unknown[]): Promise<string[]> {
  let n = 0
  const r = await c.query<{ 'QUERY PLAN': Array<{ Plan: Record<string, unknown> }> }>(`EXPLAIN (FORMAT JSON) ${text.replace(/\?/g, () => `$${++n}`)}`, [
    ...args,
  ])
  return planNodes(r.rows[0]!['QUERY PLAN'][0]!.Plan)
}

/**
 * AEGIS_BENCH_LOG_KEEP=1 keeps the filled database and prints its name;
 * AEGIS_BENCH_LOG_DB=<name> measures such a database again (migrated to the
 * current schema, indexes built as the migrations build them, fresh
 * statistics) without filling it, e.g. on a quieter machine.
 */
export async function benchLogQueries(
  adminUrl: string,
  rows = Number(process.env.AEGIS_BENCH_LOG_ROWS ?? 10_000_000),
): Promise<{ rows: number; fillSeconds: number; figures: LogQueryFigure[]; database: string; reused: boolean }> {
  const reuse = process.env.AEGIS_BENCH_LOG_DB
  if (reuse !== undefined && !/^aegis_bench_\d+$/.test(reuse)) throw new Error('AEGIS_BENCH_LOG_DB names a database kept by AEGIS_BENCH_LOG_KEEP=1')
  const keep = reuse !== undefined || process.env.AEGIS_BENCH_LOG_KEEP === '1'
  const name = reuse ?? `aegis_bench_${process.pid}`
  const admin = new pg.Client({ connectionString: adminUrl })
  await admin.connect()
  if (reuse === undefined) await admin.query(`CREATE DATABASE ${name}`)
  const u = new URL(adminUrl)
  u.pathname = `/${name}`
  const url = u.toString()
  let store: Store | undefined
  let probe: pg.Client | undefined
  try {
    store = await openPostgresStore(url, { max: 2 })
    const start = Date.UTC(2025, 0, 1)
    const t0 = performance.now()
    probe = new pg.Client({ connectionString: url })
    await probe.connect()
    if (reuse === undefined) await Promise.all([fill(url, 'audit_events', AUDIT_FILL, rows, start), fill(url, 'decisions', DECISIONS_FILL, rows, start)])
    else {
      rows = Number((await probe.query<{ n: string }>('SELECT max(id) AS n FROM audit_events')).rows[0]!.n)
      await probe.query('ANALYZE audit_events')
      await probe.query('ANALYZE decisions')
    }
    const fillSeconds = (performance.now() - t0) / 1000
    const end = start + rows * 250
    const figures: LogQueryFigure[] = []
    const s = store
    const c = probe

    const audit: Array<[string, AuditQuery]> = [
      ['no filter', { limit: 100 }],
      ['type', { type: 'token.issued', limit: 100 }],
      ['tenant', { tenant: 't5', limit: 100 }],
      ['tenant + type', { tenant: 't5', type: 'token.issued', limit: 100 }],
      ['tenant + rare type (small tenant)', { tenant: 't39', type: 'key.rotated', limit: 100 }],
      ['tenant + type, cursor at 90 %', { tenant: 't5', type: 'token.issued', cursor: Math.floor(rows * 0.9), limit: 100 }],
      ['actor', { actor: 'agent-7', limit: 100 }],
      ['actor + type, newest first', { actor: 'agent-7', type: 'token.issued', order: 'desc', limit: 100 }],
      ['since (last hour)', { since: end - HOUR, limit: 100 }],
      ['since (last day)', { since: end - 24 * HOUR, limit: 100 }],
      ['since (last day), newest first', { since: end - 24 * HOUR, order: 'desc', limit: 100 }],
      ['since (a week), cursor half-way', { since: end - 168 * HOUR, cursor: rows - 1_209_600, limit: 100 }],
      ['type + since (last day)', { type: 'token.issued', since: end - 24 * HOUR, limit: 100 }],
      ['tenant + since (last hour)', { tenant: 't5', since: end - HOUR, limit: 100 }],
      ['tenant + since (last day)', { tenant: 't5', since: end - 24 * HOUR, limit: 100 }],
      ['tenant + type + since (last hour)', { tenant: 't5', type: 'token.issued', since: end - HOUR, limit: 100 }],
      ['tenant + type + since (last day)', { tenant: 't5', type: 'token.issued', since: end - 24 * HOUR, limit: 100 }],
      ['small tenant + rare type + since (a week)', { tenant: 't39', type: 'key.rotated', since: end - 168 * HOUR, limit: 100 }],
      ['actor + since (last day)', { actor: 'agent-7', since: end - 24 * HOUR, limit: 100 }],
      ['actor + type + since (last day), newest first', { actor: 'agent-7', type: 'token.issued', since: end - 24 * HOUR, order: 'desc', limit: 100 }],
    ]
    for (const [filter, q] of audit) {
      const t = await time(() => s.audit.query(q))
      // The very statement the store sends, for its EXPLAIN beside the timing.
      const { text, args } = auditQuerySql(q)
      figures.push({ table: 'audit_events', filter, p50Ms: t.p50, p99Ms: t.p99, samples: t.n, plan: (await explain(c, text, args)).join(' < ') })
    }

    const dayAgo = { since: end - 25 * HOUR, until: end - 24 * HOUR }
    const decisions: Array<[string, DecisionQuery]> = [
      ['no filter', { limit: 100 }],
      ['tenant', { tenant: 't5', limit: 100 }],
      ['tenant + agent', { tenant: 't5', agentId: 'agent-7', limit: 100 }],
      ['tenant + tool', { tenant: 't5', tool: 'tool.20', limit: 100 }],
      ['tenant + decision (deny)', { tenant: 't5', decision: 'deny', limit: 100 }],
      ['tenant + decision (allow)', { tenant: 't5', decision: 'allow', limit: 100 }],
      ['tenant + enforced (false, shadow tenant)', { tenant: 't7', enforced: false, limit: 100 }],
      ['tenant + agent + tool', { tenant: 't5', agentId: 'agent-7', tool: 'tool.3', limit: 100 }],
      ['tenant + agent + decision (deny)', { tenant: 't5', agentId: 'agent-7', decision: 'deny', limit: 100 }],
      ['tenant + agent + enforced (false, shadow tenant)', { tenant: 't7', agentId: 'agent-7', enforced: false, limit: 100 }],
      ['tenant + tool + decision (deny)', { tenant: 't5', tool: 'tool.3', decision: 'deny', limit: 100 }],
      ['tenant + time range (an hour, a day ago)', { tenant: 't5', ...dayAgo, limit: 100 }],
      ['tenant + agent + time range (an hour, a day ago)', { tenant: 't5', agentId: 'agent-7', ...dayAgo, limit: 100 }],
      ['agent (all tenants)', { agentId: 'agent-7', limit: 100 }],
      ['tool (all tenants)', { tool: 'tool.20', limit: 100 }],
      ['agent + tool (all tenants)', { agentId: 'agent-7', tool: 'tool.3', limit: 100 }],
      ['agent + decision (deny, all tenants)', { agentId: 'agent-7', decision: 'deny', limit: 100 }],
      ['agent + decision (allow, all tenants)', { agentId: 'agent-7', decision: 'allow', limit: 100 }],
      ['tool + decision (deny, all tenants)', { tool: 'tool.20', decision: 'deny', limit: 100 }],
      ['tool + time range (an hour, a day ago)', { tool: 'tool.20', ...dayAgo, limit: 100 }],
      ['decision (deny, all tenants)', { decision: 'deny', limit: 100 }],
      ['decision (sanitize, all tenants)', { decision: 'sanitize', limit: 100 }],
      ['enforced (false, all tenants)', { enforced: false, limit: 100 }],
      ['time range (an hour, a day ago)', { ...dayAgo, limit: 100 }],
    ]
    for (const [filter, q] of decisions) {
      const t = await time(() => s.decisions.query(q))
      const { text, args } = decisionQuerySql(q, 'literal')
      figures.push({ table: 'decisions', filter, p50Ms: t.p50, p99Ms: t.p99, samples: t.n, plan: (await explain(c, text, args)).join(' < ') })
    }
    return { rows, fillSeconds, figures, database: name, reused: reuse !== undefined }
  } finally {
    await probe?.end().catch(() => {})
    await store?.close().catch(() => {})
    if (!keep) await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
    await admin.end()
  }
}
