// A log written before the audit time marks (schema version 14), by three
// writers whose clocks disagree by seconds: on the next open, migration 15
// builds the marks from the stored events and drops the (…, ts, id)
// indexes, and every `since` query still returns exactly the events at or
// after it, before and after events appended through the store.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { openPostgresStore, openSqliteStore } from '../../src/store/index.js'
import type { AuditQuery, Store } from '../../src/store/types.js'
import { postgresAtVersion, sqliteAtVersion } from '../helpers/old-schema.js'
import { freshPostgresSchema, skipWithoutPostgres } from '../helpers/services.js'

const T0 = Date.UTC(2026, 0, 1)
const INSERT = 'INSERT INTO audit_events (chain_id, chain_seq, type, tenant, actor, subject, data, ts, prev_hash, hash) VALUES '
/** 300 events in commit order; cp-1's clock runs 4.2 s behind, cp-2's 2.7 s ahead. */
const LEGACY = Array.from({ length: 300 }, (_, i) => ({
  chain: `cp-${i % 3}`,
  seq: Math.floor(i / 3) + 1,
  type: i % 4 === 0 ? 'auth.failed' : 'token.issued',
  tenant: i % 5 === 0 ? 'beta' : 'acme',
  ts: T0 + i * 100 + [0, -4200, 2700][i % 3]!,
}))
const LEGACY_ROWS = LEGACY.map((e) => [e.chain, e.seq, e.type, e.tenant, `agent:${e.tenant}/a`, null, '{}', e.ts, 'h', 'h'] as const)

interface Stored {
  id: number
  ts: number
  type: string
  tenant: string | null
}

async function assertExact(store: Store, events: readonly Stored[], what: string): Promise<void> {
  for (let since = T0 - 5000; since <= T0 + 40_000; since += 1337) {
    for (const filter of [{}, { tenant: 'beta' }, { type: 'auth.failed', tenant: 'acme' }] as const) {
      const q: AuditQuery = { ...filter, since, limit: 1000 }
      const got = (await store.audit.query(q)).map((e) => e.id)
      const want = events.filter((e) => e.ts >= since && Object.entries(filter).every(([k, v]) => (e as unknown as Record<string, unknown>)[k] === v))
      assert.deepEqual(
        got,
        want.map((e) => e.id),
        `${what}: ${JSON.stringify(filter)} since ${since - T0} ms`,
      )
    }
  }
}

async function assertUpgraded(store: Store, indexes: () => Promise<string[]>): Promise<void> {
  try {
    const legacy = (await store.audit.query({ limit: 1000 })).map((e) => ({ id: e.id, ts: e.ts, type: e.type, tenant: e.tenant }))
    assert.equal(legacy.length, 300)
    assert.deepEqual(
      (await indexes()).filter((n) => /_ts/.test(n)),
      [],
      'the (…, ts, id) indexes are gone',
    )
    await assertExact(store, legacy, 'migrated')
    // Appended through the store after the upgrade: cp-1 (behind) in its own batches, then cp-2 (ahead).
    const more = Array.from({ length: 60 }, (_, i) => ({
      chainId: i < 30 ? 'cp-1' : 'cp-2',
      chainSeq: 101 + (i % 30),
      type: 'token.issued',
      tenant: 'beta',
      actor: null,
      subject: null,
      data: {},
      ts: T0 + 30_000 + i * 150 + (i < 30 ? -4200 : 2700),
      prevHash: 'h',
      hash: 'h',
    }))
    const ids = [...(await store.audit.append(more.slice(0, 30))), ...(await store.audit.append(more.slice(30)))]
    await assertExact(store, [...legacy, ...more.map((e, i) => ({ id: ids[i]!, ts: e.ts, type: e.type, tenant: e.tenant }))], 'appended')
  } finally {
    await store.close()
  }
}

test('SQLite at schema version 14: the audit time marks are built from the stored log, and since stays exact', async () => {
  const root = mkdtempSync(join(tmpdir(), 'aegis-marks-upgrade-'))
  try {
    const path = join(root, 'aegis.db')
    await sqliteAtVersion(path, 14, (old) => {
      const insert = old.prepare(`${INSERT}(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
      for (const row of LEGACY_ROWS) insert.run(...row)
    })
    const store = await openSqliteStore(path)
    const { default: Database } = await import('better-sqlite3')
    const check = new Database(path, { readonly: true })
    try {
      await assertUpgraded(store, async () =>
        (check.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'audit_events' ORDER BY name").all() as Array<{ name: string }>).map(
          (r) => r.name,
        ),
      )
    } finally {
      check.close()
    }
  } finally {
    rmSync(root, { recursive: true, force: true })
  }
})

test('PostgreSQL at schema version 14: the audit time marks are built from the stored log, and since stays exact', {
  skip: await skipWithoutPostgres(),
}, async () => {
  const schema = await freshPostgresSchema()
  const { default: pg } = await import('pg')
  const c = new pg.Client({ connectionString: schema.url })
  try {
    await postgresAtVersion(schema.url, 14, async (old) => {
      for (const row of LEGACY_ROWS) await old.query(`${INSERT}($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`, [...row])
    })
    await c.connect()
    await assertUpgraded(await openPostgresStore(schema.url), async () =>
      (
        await c.query<{ name: string }>(
          "SELECT indexname AS name FROM pg_indexes WHERE schemaname = current_schema() AND tablename = 'audit_events' ORDER BY 1",
        )
      ).rows.map((r) => r.name),
    )
  } finally {
    await c.end()
    await schema.drop()
  }
})
