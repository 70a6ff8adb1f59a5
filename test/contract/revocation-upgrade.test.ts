// A database written before revocation lifts existed (schema version 2):
// on the next open, agent, client and tenant entries still in force stay in
// force for good (they used to lapse after the longest token lifetime), and
// the rest is untouched.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { openPostgresStore, openSqliteStore } from '../../src/store/index.js'
import { REVOCATION_PERMANENT, type Store } from '../../src/store/types.js'
import { postgresAtVersion, sqliteAtVersion } from '../helpers/old-schema.js'
import { freshPostgresSchema, skipWithoutPostgres } from '../helpers/services.js'

const NOW = Date.now()
const INSERT = 'INSERT INTO revocations (type, value, tenant, agent_id, reason, created_at, expires_at) VALUES '
/** type, value, expires_at: a live agent entry dated the old way, a lapsed one, a live jti entry. */
const ROWS: Array<[string, string, number]> = [
  ['agent', 'bot', NOW + 3_600_000],
  ['client', 'old-client', NOW - 1000],
  ['jti', 'j1', NOW + 600_000],
]

async function assertUpgraded(store: Store): Promise<void> {
  try {
    const standing = await store.revocations.listStanding(NOW)
    assert.deepEqual(
      standing.map((r) => [r.type, r.value, r.expiresAt]),
      [['agent', 'bot', REVOCATION_PERMANENT]],
    )
    const active = await store.revocations.listActive(NOW)
    assert.deepEqual(
      active.map((r) => [r.value, r.expiresAt]),
      [
        ['bot', REVOCATION_PERMANENT],
        ['j1', NOW + 600_000],
      ],
      'jti entries keep their expiry; a lapsed entry stays lapsed',
    )
    const lifted = await store.revocations.lift(standing[0]!.seq, NOW, 'admin:test')
    assert.equal(lifted?.liftSeq, 4)
  } finally {
    await store.close()
  }
}

test('SQLite at schema version 2: live agent/client/tenant revocations become permanent on open', async () => {
  const root = mkdtempSync(join(tmpdir(), 'aegis-upgrade-'))
  try {
    const path = join(root, 'aegis.db')
    assert.deepEqual(
      await sqliteAtVersion(path, 2, (old) => {
        for (const [type, value, exp] of ROWS) old.prepare(`${INSERT}(?, ?, 'acme', NULL, NULL, ?, ?)`).run(type, value, NOW - 5000, exp)
      }),
      [1, 2],
    )
    await assertUpgraded(await openSqliteStore(path))
  } finally {
    rmSync(root, { recursive: true, force: true })
  }
})

test('PostgreSQL at schema version 2: live agent/client/tenant revocations become permanent on open', { skip: await skipWithoutPostgres() }, async () => {
  const schema = await freshPostgresSchema()
  try {
    assert.deepEqual(
      await postgresAtVersion(schema.url, 2, async (c) => {
        for (const [type, value, exp] of ROWS) await c.query(`${INSERT}($1, $2, 'acme', NULL, NULL, $3, $4)`, [type, value, NOW - 5000, exp])
      }),
      [1, 2],
    )
    await assertUpgraded(await openPostgresStore(schema.url))
  } finally {
    await schema.drop()
  }
})
