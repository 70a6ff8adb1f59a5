import { test } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadConfig } from '../../src/config/load.js'
import { AegisError } from '../../src/errors.js'
import { silentLogger } from '../../src/observability/logger.js'
import { openPostgresStore, openStore, openSqliteStore } from '../../src/store/index.js'
import type { Store } from '../../src/store/types.js'
import { postgresAtVersion, sqliteAtVersion } from '../helpers/old-schema.js'
import { freshPostgresSchema, skipWithoutPostgres } from '../helpers/services.js'

test('openStore without databaseUrl opens SQLite in a new 0700 data dir', async () => {
  const root = mkdtempSync(join(tmpdir(), 'aegis-open-'))
  try {
    const dataDir = join(root, 'nested', '.aegis')
    const store = await openStore(loadConfig({ env: {}, overrides: { dataDir } }), silentLogger())
    try {
      assert.equal(store.kind, 'sqlite')
      assert.ok(existsSync(join(dataDir, 'aegis.db')))
      if (process.platform !== 'win32') {
        assert.equal(statSync(dataDir).mode & 0o777, 0o700)
        assert.equal(statSync(join(dataDir, 'aegis.db')).mode & 0o777, 0o600)
      }
      await store.tenants.create({ id: 'acme', name: 'Acme', requireAttestation: false, createdAt: 1 })
    } finally {
      await store.close()
    }
    const again = await openStore(loadConfig({ env: {}, overrides: { dataDir } }), silentLogger())
    assert.equal((await again.tenants.get('acme'))?.name, 'Acme', 'the same file is opened again')
    await again.close()
  } finally {
    rmSync(root, { recursive: true, force: true })
  }
})

test('openStore with databaseUrl opens PostgreSQL in the search_path schema', { skip: await skipWithoutPostgres() }, async () => {
  const schema = await freshPostgresSchema()
  try {
    const store = await openStore(loadConfig({ env: {}, overrides: { databaseUrl: schema.url } }), silentLogger())
    try {
      assert.equal(store.kind, 'postgres')
      await store.tenants.create({ id: 'acme', name: 'Acme', requireAttestation: false, createdAt: 1 })
    } finally {
      await store.close()
    }
  } finally {
    await schema.drop()
  }
})

test('an unreachable PostgreSQL is reported as temporarily_unavailable, not a driver error', async () => {
  await assert.rejects(
    openStore(loadConfig({ env: {}, overrides: { databaseUrl: 'postgres://postgres@127.0.0.1:1/none' } }), silentLogger()),
    (err: unknown) => err instanceof AegisError && err.code === 'temporarily_unavailable',
  )
})

test('a closed SQLite store rejects with temporarily_unavailable, not a driver error', async () => {
  const root = mkdtempSync(join(tmpdir(), 'aegis-open-'))
  try {
    const store = await openSqliteStore(join(root, 'aegis.db'))
    await store.close()
    await assert.rejects(store.tenants.list(), (err: unknown) => err instanceof AegisError && err.code === 'temporarily_unavailable')
    await assert.rejects(
      store.audit.append([{ chainId: 'c', chainSeq: 1, type: 't', tenant: null, actor: null, subject: null, data: {}, ts: 1, prevHash: 'a', hash: 'b' }]),
      (err: unknown) => err instanceof AegisError && err.code === 'temporarily_unavailable',
    )
  } finally {
    rmSync(root, { recursive: true, force: true })
  }
})

test('a SQLite file that is not a database is refused with temporarily_unavailable', async () => {
  const root = mkdtempSync(join(tmpdir(), 'aegis-open-'))
  try {
    const path = join(root, 'aegis.db')
    const { writeFileSync } = await import('node:fs')
    writeFileSync(path, 'this is not a database, just text that is long enough to have a header'.repeat(20))
    await assert.rejects(openSqliteStore(path), (err: unknown) => err instanceof AegisError && err.code === 'temporarily_unavailable')
  } finally {
    rmSync(root, { recursive: true, force: true })
  }
})

test('a column added by a newer migration does not break a running PostgreSQL store', { skip: await skipWithoutPostgres() }, async () => {
  const schema = await freshPostgresSchema()
  const { default: pg } = await import('pg')
  try {
    const store = await openPostgresStore(schema.url, { max: 1 })
    try {
      await store.tenants.create({ id: 'acme', name: 'Acme', requireAttestation: false, createdAt: 1 })
      assert.equal((await store.tenants.get('acme'))?.name, 'Acme')
      const admin = new pg.Client({ connectionString: schema.url })
      await admin.connect()
      await admin.query('ALTER TABLE tenants ADD COLUMN region TEXT')
      await admin.end()
      assert.equal((await store.tenants.get('acme'))?.name, 'Acme')
      assert.equal((await store.tenants.list()).length, 1)
    } finally {
      await store.close()
    }
  } finally {
    await schema.drop()
  }
})

test('control planes starting together on an empty PostgreSQL schema apply each migration once', { skip: await skipWithoutPostgres() }, async () => {
  const schema = await freshPostgresSchema()
  const { default: pg } = await import('pg')
  try {
    const stores = await Promise.all(Array.from({ length: 4 }, () => openPostgresStore(schema.url)))
    try {
      const c = new pg.Client({ connectionString: schema.url })
      await c.connect()
      const { rows } = await c.query<{ version: number; n: string }>('SELECT version, count(*) AS n FROM schema_migrations GROUP BY version')
      await c.end()
      assert.ok(rows.length >= 1)
      for (const r of rows) assert.equal(Number(r.n), 1)
      await stores[0]!.tenants.create({ id: 'acme', name: 'Acme', requireAttestation: false, createdAt: 1 })
      assert.equal((await stores[3]!.tenants.get('acme'))?.name, 'Acme')
    } finally {
      for (const s of stores) await s.close()
    }
  } finally {
    await schema.drop()
  }
})

test('processes opening a new SQLite file together apply each migration once', async () => {
  const root = mkdtempSync(join(tmpdir(), 'aegis-open-'))
  try {
    const path = join(root, 'aegis.db')
    const storeModule = new URL('../../src/store/sqlite/store.ts', import.meta.url).href
    const code = `const m = await import(${JSON.stringify(storeModule)}); const s = await m.openSqliteStore(${JSON.stringify(path)}); await s.close()`
    const { spawn } = await import('node:child_process')
    const codes = await Promise.all(
      Array.from(
        { length: 3 },
        () =>
          new Promise<number | null>((resolve, reject) => {
            const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { stdio: ['ignore', 'ignore', 'inherit'] })
            child.on('error', reject)
            child.on('exit', resolve)
          }),
      ),
    )
    assert.deepEqual(codes, [0, 0, 0])
    const store = await openSqliteStore(path)
    await store.tenants.create({ id: 'acme', name: 'Acme', requireAttestation: false, createdAt: 1 })
    await store.close()
    const { default: Database } = await import('better-sqlite3')
    const db = new Database(path, { readonly: true })
    const rows = db.prepare('SELECT version FROM schema_migrations ORDER BY version').all() as { version: number }[]
    db.close()
    assert.ok(rows.length >= 1)
    assert.deepEqual(
      rows.map((r) => r.version),
      [...new Set(rows.map((r) => r.version))],
    )
  } finally {
    rmSync(root, { recursive: true, force: true })
  }
})

// A database written by a release before console logouts existed (schema
// version 1 only) must gain the table on the next open, keeping its data.

/** A store opened on a version-1 schema kept its data and has the console-logout table; closes it. */
async function assertUpgraded(store: Store): Promise<void> {
  try {
    assert.equal((await store.tenants.get('acme'))?.name, 'Acme')
    await store.consoleLogouts.add('sid-1', 5000)
    assert.equal(await store.consoleLogouts.has('sid-1'), true)
  } finally {
    await store.close()
  }
}

test('a SQLite file at schema version 1 is upgraded on open: console logouts work and old data stays', async () => {
  const root = mkdtempSync(join(tmpdir(), 'aegis-open-'))
  try {
    const path = join(root, 'aegis.db')
    assert.deepEqual(
      await sqliteAtVersion(path, 1, (old) => {
        old.prepare('INSERT INTO tenants (id, name, require_attestation, created_at) VALUES (?, ?, ?, ?)').run('acme', 'Acme', 0, 1)
      }),
      [1],
    )
    const store = await openSqliteStore(path)
    await assertUpgraded(store)
    const { default: Database } = await import('better-sqlite3')
    const db = new Database(path, { readonly: true })
    const rows = db.prepare('SELECT version, name FROM schema_migrations ORDER BY version').all() as { version: number; name: string }[]
    db.close()
    assert.deepEqual(
      rows.filter((r) => r.version <= 2),
      [
        { version: 1, name: 'initial' },
        { version: 2, name: 'console_logouts' },
      ],
    )
  } finally {
    rmSync(root, { recursive: true, force: true })
  }
})

test('a PostgreSQL schema at version 1 is upgraded on open: console logouts work and old data stays', { skip: await skipWithoutPostgres() }, async () => {
  const schema = await freshPostgresSchema()
  const { default: pg } = await import('pg')
  try {
    assert.deepEqual(
      await postgresAtVersion(schema.url, 1, async (c) => {
        await c.query('INSERT INTO tenants (id, name, require_attestation, created_at) VALUES ($1, $2, $3, $4)', ['acme', 'Acme', false, 1])
      }),
      [1],
    )
    const store = await openPostgresStore(schema.url)
    await assertUpgraded(store)
    const v = new pg.Client({ connectionString: schema.url })
    await v.connect()
    try {
      const { rows } = await v.query<{ version: number; name: string }>('SELECT version, name FROM schema_migrations WHERE version <= 2 ORDER BY version')
      assert.deepEqual(rows, [
        { version: 1, name: 'initial' },
        { version: 2, name: 'console_logouts' },
      ])
    } finally {
      await v.end()
    }
  } finally {
    await schema.drop()
  }
})
