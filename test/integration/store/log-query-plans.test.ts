/**
 * Every filter combination of GET /admin/v1/audit and the indexed ones of
 * GET /admin/v1/decisions read their page in order from one index on
 * PostgreSQL: no Sort over the matching rows, no bitmap combining two
 * indexes (what made `?type=&tenant=` take 133 ms at 500,000 events). The
 * plans are the planner's own choice for the store's own statements (captured
 * as the store sends them) over 200,000 rows per table with fresh statistics,
 * both as first planned (custom plan) and as a prepared statement is planned
 * after five runs (generic plan). Speed itself is measured by
 * `npm run bench -- log-queries`. The decision-log filters are checked on
 * SQLite as well (its planner, the same statements).
 */
import { after, before, test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import pg from 'pg'
import { freshPostgresSchema, skipWithoutPostgres } from '../../helpers/services.js'
import { openPostgresStore } from '../../../src/store/postgres/store.js'
import { AUDIT_TIME_MARKS_FROM_EVENTS } from '../../../src/store/sql/migrations.js'
import { auditQuerySql, decisionQuerySql } from '../../../src/store/sql/repositories.js'
import { openSqliteStore } from '../../../src/store/sqlite/index.js'
import type { AuditQuery, DecisionQuery, Store } from '../../../src/store/types.js'

const skip = await skipWithoutPostgres()
const ROWS = 200_000
const START = Date.UTC(2025, 0, 1)

let db: Awaited<ReturnType<typeof freshPostgresSchema>> | undefined
let store: Store | undefined
let probe: pg.Client | undefined

before(async () => {
  if (skip !== false) return
  db = await freshPostgresSchema()
  store = await openPostgresStore(db.url, { max: 2 })
  probe = new pg.Client({ connectionString: db.url })
  await probe.connect()
  // The secondary indexes are built once after the fill, from the migrations' own definitions: faster than row by row.
  const loose = await probe.query<{ name: string; def: string }>(
    `SELECT i.relname AS name, pg_get_indexdef(i.oid) AS def FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
      WHERE x.indrelid IN ('audit_events'::regclass, 'decisions'::regclass) AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.oid)`,
  )
  for (const i of loose.rows) await probe.query(`DROP INDEX ${i.name}`)
  // Skewed tenants (t0 largest, t39 smallest, 3 % none), 16 event types, 50 actors, one event every 250 ms by writers' clocks a little apart.
  await probe.query(
    `INSERT INTO audit_events (chain_id, chain_seq, type, tenant, actor, subject, data, ts, prev_hash, hash)
    SELECT 'cp-' || (i % 3), i, (ARRAY['decision','decision','decision','decision','token.issued','token.issued','token.issued','auth.failed',
      'token.revoked','approval.requested','approval.approved','approval.denied','key.rotated','policy.activated','admin.agent_created',
      'admin.console_login'])[1 + (r * 16)::int % 16],
      CASE WHEN r2 < 0.03 THEN NULL ELSE 't' || floor(40 * r2 * r2)::int END, 'agent-' || (i % 50), 's', '{}',
      $2::bigint + i * 250 + (i % 7) * 300, md5(i::text), md5(i::text)
    FROM (SELECT i::bigint AS i, random() AS r, random() AS r2 FROM generate_series(1, $1::int) i) s`,
    [ROWS, START],
  )
  await probe.query(
    `INSERT INTO decisions (ts, id, received_at, gateway_id, type, mode, tenant, agent_id, client_id, jti, tool, resource,
      decision, enforced, reasons, policy_version, policy_ids, risk, degraded, error, latency_ms, trace_id, params)
    SELECT $2::bigint + i * 250, md5(i::text), $2::bigint + i * 250, 'gw', 'decision', 'authorize', tenant, 'agent-' || (i % 50), 'c', 'j',
      'tool.' || floor(30 * r3 * r3)::int, NULL, CASE WHEN r < 0.85 THEN 'allow' WHEN r < 0.95 THEN 'deny' ELSE 'approval_needed' END,
      tenant NOT IN ('t3', 't7'), '[]', 'v1', NULL, NULL, NULL, NULL, 0.4, NULL, NULL
    FROM (SELECT i, r, r3, CASE WHEN r2 < 0.03 THEN NULL ELSE 't' || floor(40 * r2 * r2)::int END AS tenant
          FROM (SELECT i::bigint AS i, random() AS r, random() AS r2, random() AS r3 FROM generate_series(1, $1::int) i) a) s`,
    [ROWS, START],
  )
  for (const i of loose.rows) await probe.query(i.def)
  // The fill bypassed the store's append, which keeps the time marks: build them as migration 15 does.
  await probe.query(AUDIT_TIME_MARKS_FROM_EVENTS)
  await probe.query('ANALYZE audit_time_marks')
  await probe.query('ANALYZE audit_events')
  await probe.query('ANALYZE decisions')
})

after(async () => {
  await probe?.end()
  await store?.close()
  await db?.drop()
})

/** The statements the store sends on any pooled client while `fn` runs. */
async function sent(fn: () => Promise<unknown>): Promise<Array<{ text: string; values: unknown[] }>> {
  const seen: Array<{ text: string; values: unknown[] }> = []
  const proto = pg.Client.prototype as unknown as { query: (...a: unknown[]) => unknown }
  const original = proto.query
  proto.query = function (this: unknown, ...a: unknown[]) {
    const c = a[0] as { text?: unknown; values?: unknown[] } | string
    if (typeof c === 'object' && c !== null && typeof c.text === 'string') seen.push({ text: c.text, values: c.values ?? [] })
    return original.apply(this, a)
  }
  try {
    await fn()
  } finally {
    proto.query = original
  }
  return seen
}

interface PlanNode {
  'Node Type': string
  'Index Name'?: string
  'Index Cond'?: string
  Plans?: PlanNode[]
}

function nodes(n: PlanNode): PlanNode[] {
  return [n, ...(n.Plans ?? []).flatMap(nodes)]
}

function describe(n: PlanNode): string {
  return nodes(n)
    .map((x) => (x['Index Name'] ? `${x['Node Type']} using ${x['Index Name']}` : x['Node Type']))
    .join(' < ')
}

/** The custom and the generic plan of a statement the store sent. */
async function plans(s: { text: string; values: unknown[] }): Promise<Record<'custom' | 'generic', PlanNode>> {
  const c = probe!
  const custom = await c.query(`EXPLAIN (FORMAT JSON) ${s.text}`, s.values)
  await c.query('DEALLOCATE ALL')
  await c.query(`PREPARE q AS ${s.text}`)
  try {
    // What a prepared statement runs once PostgreSQL stops re-planning it for each value.
    await c.query('SET plan_cache_mode = force_generic_plan')
    const generic = await c.query(`EXPLAIN (FORMAT JSON) EXECUTE q(${s.values.map((v) => pg.Client.prototype.escapeLiteral(String(v))).join(', ')})`)
    return { custom: custom.rows[0]['QUERY PLAN'][0].Plan, generic: generic.rows[0]['QUERY PLAN'][0].Plan }
  } finally {
    await c.query('RESET plan_cache_mode')
    await c.query('DEALLOCATE q')
  }
}

function assertInOrder(plan: PlanNode, what: string, index?: string): void {
  const all = nodes(plan)
  const shape = describe(plan)
  assert.ok(!all.some((n) => n['Node Type'] === 'Sort' || n['Node Type'] === 'Incremental Sort'), `${what}: sorts the matching rows: ${shape}`)
  assert.ok(!all.some((n) => n['Node Type'].startsWith('Bitmap')), `${what}: combines indexes in a bitmap: ${shape}`)
  assert.ok(!all.some((n) => n['Node Type'] === 'Seq Scan' || n['Node Type'] === 'Parallel Seq Scan'), `${what}: scans the table: ${shape}`)
  assert.ok(
    all.some((n) => /Index (Only )?Scan/.test(n['Node Type'])),
    `${what}: no index scan: ${shape}`,
  )
  if (index !== undefined)
    assert.ok(
      all.some((n) => n['Index Name'] === index),
      `${what}: not served by ${index}: ${shape}`,
    )
}

/**
 * An audit page with since may instead sort a filter's rows past the time mark, read through a bitmap bounded by
 * the mark's id, when PostgreSQL takes them to be few: the id bound and ts + 0 count a third each in its estimate,
 * so it does so only for filters that match fewer than about nine pages' worth of rows. Never a parallel plan.
 */
function assertFromMark(plan: PlanNode, what: string, index?: string): void {
  const all = nodes(plan)
  const shape = describe(plan)
  if (!all.some((n) => n['Node Type'] === 'Sort')) {
    assertInOrder(plan, what, index)
    return
  }
  const bitmap = all.find((n) => n['Node Type'] === 'Bitmap Index Scan')
  assert.match(bitmap?.['Index Cond'] ?? '', /\bid >= /, `${what}: sorts rows the mark does not bound: ${shape}`)
  assert.ok(!all.some((n) => /Seq Scan|Gather/.test(n['Node Type'])), `${what}: scans the table or in parallel: ${shape}`)
  if (index !== undefined) assert.equal(bitmap?.['Index Name'], index, `${what}: not served by ${index}: ${shape}`)
}

async function check(what: string, run: () => Promise<unknown>, table: string, index?: string, fromMark = false): Promise<void> {
  const statements = (await sent(run)).filter((s) => s.text.includes(`FROM ${table}`))
  assert.equal(statements.length, 1, `${what}: one statement on ${table}`)
  const p = await plans(statements[0]!)
  const assertPlan = fromMark ? assertFromMark : assertInOrder
  assertPlan(p.custom, `${what} (custom plan)`, index)
  assertPlan(p.generic, `${what} (generic plan)`, index)
}

const HALF = START + ROWS * 125
// With since, from the first id its time mark allows (ts is each writer's clock, not the id's order), through the same indexes.
const AUDIT: Array<[string, AuditQuery, string?]> = [
  ['no filter', { limit: 100 }],
  ['type', { type: 'token.issued', limit: 100 }],
  ['tenant', { tenant: 't5', limit: 100 }],
  ['small tenant', { tenant: 't39', limit: 100 }],
  ['tenant + type', { tenant: 't5', type: 'token.issued', limit: 100 }, 'audit_events_tenant_type'],
  ['small tenant + rare type', { tenant: 't39', type: 'key.rotated', limit: 100 }, 'audit_events_tenant_type'],
  ['tenant + type + cursor', { tenant: 't5', type: 'token.issued', cursor: ROWS * 0.9, limit: 100 }, 'audit_events_tenant_type'],
  ['type + cursor', { type: 'auth.failed', cursor: ROWS * 0.5, limit: 1000 }],
  ['actor', { actor: 'agent-7', limit: 100 }],
  ['actor + type, newest first', { actor: 'agent-7', type: 'token.issued', order: 'desc', limit: 100 }, 'audit_events_actor_type'],
  ['since', { since: HALF, limit: 100 }, 'audit_events_pkey'],
  ['since, newest first', { since: HALF, order: 'desc', limit: 100 }, 'audit_events_pkey'],
  ['since + cursor', { since: START, cursor: ROWS / 2, limit: 100 }, 'audit_events_pkey'],
  ['type + since', { type: 'key.rotated', since: HALF, limit: 100 }],
  ['tenant + since', { tenant: 't5', since: HALF, limit: 100 }],
  ['small tenant + since', { tenant: 't39', since: START, limit: 100 }],
  ['tenant + type + since', { tenant: 't5', type: 'token.issued', since: START, limit: 100 }, 'audit_events_tenant_type'],
  [
    'tenant + type + since + cursor, newest first',
    { tenant: 't5', type: 'auth.failed', since: START, order: 'desc', cursor: ROWS / 2, limit: 100 },
    'audit_events_tenant_type',
  ],
  ['actor + since', { actor: 'agent-7', since: START, limit: 100 }],
  ['actor + type + since, newest first', { actor: 'agent-7', type: 'token.issued', since: START, order: 'desc', limit: 100 }, 'audit_events_actor_type'],
]

test('each audit filter combination reads its page in id order from one index on PostgreSQL, with since from its time mark on', { skip }, async () => {
  for (const [what, q, index] of AUDIT) await check(`audit ${what}`, () => store!.audit.query(q), 'audit_events', index, q.since !== undefined)
})

const END = START + ROWS * 250
// A time range that holds only a few of one agent's rows may be sorted (bounded by the range's index condition); the bench times it.
const DECISIONS: Array<[string, DecisionQuery, string?]> = [
  ['no filter', { limit: 100 }],
  ['tenant', { tenant: 't5', limit: 100 }, 'decisions_tenant'],
  ['tenant + agent', { tenant: 't5', agentId: 'agent-7', limit: 100 }, 'decisions_tenant_agent'],
  ['tenant + tool', { tenant: 't5', tool: 'tool.20', limit: 100 }, 'decisions_tenant_tool'],
  ['tenant + decision', { tenant: 't5', decision: 'deny', limit: 100 }, 'decisions_tenant_kind'],
  // Allows are most rows: their filter reads the index of its other filters (the kind indexes hold every kind but allow).
  ['tenant + allow', { tenant: 't5', decision: 'allow', limit: 100 }, 'decisions_tenant'],
  ['tenant + time range', { tenant: 't5', since: END - 7_200_000, until: END - 3_600_000, limit: 100 }, 'decisions_tenant'],
  ['time range', { since: END - 7_200_000, until: END - 3_600_000, limit: 100 }],
  ['agent', { agentId: 'agent-7', limit: 100 }, 'decisions_agent'],
  ['tool', { tool: 'tool.20', limit: 100 }, 'decisions_tool'],
  ['agent + tool', { agentId: 'agent-7', tool: 'tool.3', limit: 100 }, 'decisions_agent_tool'],
  // A handful of rows match three filters at this size: a page of 20 keeps the planner from sorting them all.
  ['tenant + agent + tool', { tenant: 't0', agentId: 'agent-7', tool: 'tool.0', limit: 20 }, 'decisions_tenant_agent_tool'],
  ['decision', { decision: 'approval_needed', limit: 100 }, 'decisions_kind'],
  ['allow', { decision: 'allow', limit: 100 }],
  ['tenant + agent + decision', { tenant: 't0', agentId: 'agent-7', decision: 'deny', limit: 20 }, 'decisions_tenant_agent_kind'],
  ['agent + decision', { agentId: 'agent-7', decision: 'deny', limit: 100 }, 'decisions_agent_kind'],
  ['agent + allow', { agentId: 'agent-7', decision: 'allow', limit: 100 }, 'decisions_agent'],
  ['tool + decision', { tool: 'tool.20', decision: 'deny', limit: 100 }, 'decisions_tool_kind'],
  ['agent + cursor', { agentId: 'agent-7', after: { ts: END - 7_200_000, id: 'f'.repeat(32) }, limit: 100 }, 'decisions_agent'],
]

test('each indexed decision-log filter combination reads its page newest first from one index on PostgreSQL', { skip }, async () => {
  for (const [what, q, index] of DECISIONS) await check(`decisions ${what}`, () => store!.decisions.query(q), 'decisions', index)
})

/** A migrated SQLite database of its own, opened directly (the fill bypasses the store), removed after the test. */
async function migratedSqlite(t: TestContext): Promise<Database.Database> {
  const dir = mkdtempSync(join(tmpdir(), 'aegis-log-plans-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const path = join(dir, 'a.db')
  await (await openSqliteStore(path)).close()
  const db = new Database(path)
  t.after(() => db.close())
  return db
}

test('on SQLite too, each indexed decision-log filter reads its page newest first from its index, without sorting', async (t) => {
  const db = await migratedSqlite(t)
  // The same shape as the PostgreSQL fill, smaller: 85 % allows, skewed tenants and tools, 50 agents.
  db.exec(`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 40000),
    r AS (SELECT i, abs(random() % 1000) / 1000.0 AS r, abs(random() % 1000) / 1000.0 AS r2, abs(random() % 1000) / 1000.0 AS r3 FROM n)
    INSERT INTO decisions (ts, id, received_at, gateway_id, type, mode, tenant, agent_id, client_id, jti, tool, resource,
      decision, enforced, reasons, policy_version, policy_ids, risk, degraded, error, latency_ms, trace_id, params)
    SELECT ${START} + i * 250, printf('%032x', i), ${START} + i * 250, 'gw', 'decision', 'authorize',
      CASE WHEN r2 < 0.03 THEN NULL ELSE 't' || CAST(40 * r2 * r2 AS INTEGER) END, 'agent-' || (i % 50), 'c', 'j',
      'tool.' || CAST(30 * r3 * r3 AS INTEGER), NULL, CASE WHEN r < 0.85 THEN 'allow' WHEN r < 0.95 THEN 'deny' ELSE 'approval_needed' END,
      1, '[]', 'v1', NULL, NULL, NULL, NULL, 0.4, NULL, NULL FROM r`)
  db.exec('ANALYZE')
  const end = START + 40_000 * 250
  for (const [what, q, index] of DECISIONS) {
    const at = { ...q }
    // The same windows, a fifth as far back (this log is a fifth as long).
    if (at.since !== undefined) at.since = end - (END - at.since) / 5
    if (at.until !== undefined) at.until = end - (END - at.until) / 5
    if (at.after !== undefined) at.after = { ...at.after, ts: end - (END - at.after.ts) / 5 }
    const { text, args } = decisionQuerySql(at)
    const plan = (db.prepare(`EXPLAIN QUERY PLAN ${text}`).all(...args) as Array<{ detail: string }>).map((r) => r.detail).join(' | ')
    assert.doesNotMatch(plan, /TEMP B-TREE/, `decisions ${what}: sorts the matching rows: ${plan}`)
    if (index !== undefined) assert.match(plan, new RegExp(`USING (COVERING )?INDEX ${index} `), `decisions ${what}: not served by ${index}: ${plan}`)
  }
})

test('on SQLite too, each audit filter with since reads its page in id order from its index, from the time mark on', async (t) => {
  const db = await migratedSqlite(t)
  // The same shape as the PostgreSQL fill, a fifth as long: three writers' clocks a little apart.
  db.exec(
    `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 40000),
    r AS (SELECT i, abs(random() % 1000) / 1000.0 AS r, abs(random() % 1000) / 1000.0 AS r2 FROM n)
    INSERT INTO audit_events (chain_id, chain_seq, type, tenant, actor, subject, data, ts, prev_hash, hash)
    SELECT 'cp-' || (i % 3), i, (ARRAY_TYPES)[0], CASE WHEN r2 < 0.03 THEN NULL ELSE 't' || CAST(40 * r2 * r2 AS INTEGER) END,
      'agent-' || (i % 50), 's', '{}', ${START} + i * 250 + (i % 7) * 300, 'h', 'h' FROM r`.replace(
      '(ARRAY_TYPES)[0]',
      `CASE CAST(r * 8 AS INTEGER) WHEN 0 THEN 'key.rotated' WHEN 1 THEN 'auth.failed' WHEN 2 THEN 'decision' ELSE 'token.issued' END`,
    ),
  )
  db.exec(AUDIT_TIME_MARKS_FROM_EVENTS)
  db.exec('ANALYZE')
  const end = START + 40_000 * 250
  for (const [what, q, index] of AUDIT) {
    if (q.since === undefined) continue
    const at = { ...q, since: end - (START + ROWS * 250 - q.since) / 5 }
    if (at.cursor !== undefined) at.cursor = at.cursor / 5
    const { text, args } = auditQuerySql(at)
    const plan = (db.prepare(`EXPLAIN QUERY PLAN ${text}`).all(...args) as Array<{ detail: string }>).map((r) => r.detail).join(' | ')
    assert.doesNotMatch(plan, /TEMP B-TREE|SCAN audit/, `audit ${what}: sorts or scans: ${plan}`)
    assert.match(plan, /USING (COVERING )?INDEX audit_time_marks_max_ts \(max_ts>\?\)/, `audit ${what}: no time mark: ${plan}`)
    const own = index === 'audit_events_pkey' ? 'INTEGER PRIMARY KEY' : `(COVERING )?INDEX ${index ?? 'audit_events_\\w+'}`
    assert.match(plan, new RegExp(`SEARCH audit_events USING ${own} \\((.*AND )?(rowid|id)[<>]`), `audit ${what}: not from the mark through ${index}: ${plan}`)
  }
})
