/**
 * Introspection and token exchange look up the revocations that could cover
 * a token through the (type, value) index (migration 11), on SQLite and on
 * PostgreSQL, never by reading every entry in force: with 100,000 jti
 * entries that was 100,000 rows per exchange. So does the console's agent
 * page (GET /admin/v1/revocations?tenant=&agent_id=: (type, value) and the
 * partial (tenant, agent_id) index of migration 13). The plans are the
 * engines' own, for the store's own statements, over 50,000 entries: on
 * SQLite without statistics (the store never runs ANALYZE), on PostgreSQL with.
 */
import { after, test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import pg from 'pg'
import { loadConfig } from '../../../src/config/load.js'
import { silentLogger } from '../../../src/observability/logger.js'
import { openStore } from '../../../src/store/index.js'
import { openPostgresStore } from '../../../src/store/postgres/store.js'
import { revocationCoveringSql, revocationPageSql } from '../../../src/store/sql/repositories.js'
import { freshPostgresSchema, skipWithoutPostgres } from '../../helpers/services.js'

const ROWS = 50_000
const NOW = Date.UTC(2026, 0, 1)
const tokens = [
  { jti: 'jti-123', tenant: 'acme', agentId: 'bot', clientId: 'ag_bot', kid: 'k1', iat: NOW / 1000 },
  { jti: '', tenant: 'acme', agentId: 'planner', clientId: '', kid: '', iat: NOW / 1000 },
]
const agentPage = () => revocationPageSql(NOW, 0, 1000, { tenant: 'acme', agentId: 'bot' })
const cleanups: Array<() => Promise<void> | void> = []
after(async () => {
  for (const c of cleanups.reverse()) await c()
})

test('SQLite reads the covering entries through revocations_type_value, an agent page through it and revocations_agent', async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'aegis-revplan-'))
  cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }))
  const store = await openStore(loadConfig({ env: {}, overrides: { dataDir } }), silentLogger())
  await store.close()
  const db = new Database(join(dataDir, 'aegis.db'))
  cleanups.push(() => void db.close())
  const insert = db.prepare(
    "INSERT INTO revocations (type, value, tenant, agent_id, reason, created_at, expires_at) VALUES ('jti', ?, 'acme', NULL, NULL, ?, ?)",
  )
  db.transaction(() => {
    for (let i = 0; i < ROWS; i++) insert.run(`jti-${i}`, NOW, NOW + 3_600_000)
  })()
  const { text, args } = revocationCoveringSql(tokens, NOW)
  const plan = (db.prepare(`EXPLAIN QUERY PLAN ${text}`).all(...args) as Array<{ detail: string }>).map((r) => r.detail)
  assert.ok(
    plan.some((d) => d.includes('revocations_type_value')),
    plan.join('\n'),
  )
  assert.ok(!plan.some((d) => /^SCAN revocations\b(?! USING)/.test(d)), `no full scan:\n${plan.join('\n')}`)
  const page = agentPage()
  const pagePlan = (db.prepare(`EXPLAIN QUERY PLAN ${page.text}`).all(...page.args) as Array<{ detail: string }>).map((r) => r.detail)
  for (const index of ['revocations_type_value', 'revocations_agent'])
    assert.ok(
      pagePlan.some((d) => d.includes(index)),
      `${index}:\n${pagePlan.join('\n')}`,
    )
  assert.ok(!pagePlan.some((d) => /^SCAN revocations\b/.test(d)), `no scan:\n${pagePlan.join('\n')}`)
})

test('PostgreSQL reads the covering entries through revocations_type_value, an agent page through it and revocations_agent', {
  skip: await skipWithoutPostgres(),
}, async () => {
  const db = await freshPostgresSchema()
  cleanups.push(db.drop)
  const store = await openPostgresStore(db.url, { max: 1 })
  await store.close()
  const probe = new pg.Client({ connectionString: db.url })
  await probe.connect()
  cleanups.push(() => probe.end())
  await probe.query(
    `INSERT INTO revocations (type, value, tenant, agent_id, reason, created_at, expires_at)
     SELECT 'jti', 'jti-' || i, 'acme', NULL, NULL, $2::bigint, $2::bigint + 3600000 FROM generate_series(1, $1::int) i`,
    [ROWS, NOW],
  )
  await probe.query('ANALYZE revocations')
  const { text, args } = revocationCoveringSql(tokens, NOW)
  let n = 0
  const plan = (await probe.query<{ 'QUERY PLAN': string }>(`EXPLAIN ${text.replace(/\?/g, () => `$${++n}`)}`, args)).rows.map((r) => r['QUERY PLAN'])
  assert.ok(
    plan.some((l) => l.includes('revocations_type_value')),
    plan.join('\n'),
  )
  assert.ok(!plan.some((l) => l.includes('Seq Scan on revocations')), plan.join('\n'))
  const page = agentPage()
  let m = 0
  const pagePlan = (await probe.query<{ 'QUERY PLAN': string }>(`EXPLAIN ${page.text.replace(/\?/g, () => `$${++m}`)}`, page.args)).rows.map(
    (r) => r['QUERY PLAN'],
  )
  for (const index of ['revocations_type_value', 'revocations_agent'])
    assert.ok(
      pagePlan.some((l) => l.includes(index)),
      `${index}:\n${pagePlan.join('\n')}`,
    )
  assert.ok(!pagePlan.some((l) => l.includes('Seq Scan on revocations')), pagePlan.join('\n'))
})
