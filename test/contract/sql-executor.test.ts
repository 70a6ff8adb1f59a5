/**
 * The SQL executors under the shared repositories (src/store/sql): the same
 * statement text and the same transaction, run on SQLite and PostgreSQL,
 * give the same results; a transaction commits whole or not at all; and
 * SQLite's transactions stay synchronous.
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import Database from 'better-sqlite3'
import pg from 'pg'
import { NotFound } from '../../src/errors.js'
import { numbered, one, run, type Sql } from '../../src/store/sql/executor.js'
import { PgSql } from '../../src/store/postgres/store.js'
import { SqliteSql } from '../../src/store/sqlite/store.js'
import { freshPostgresSchema, skipWithoutPostgres } from '../helpers/services.js'

interface Handle {
  sql: Sql
  close: () => Promise<void>
}

const CREATE = 'CREATE TABLE kv (k TEXT PRIMARY KEY, v INTEGER NOT NULL)'
const num = (r: Record<string, unknown>): number => Number(r.v)

function executorContract(name: string, open: () => Promise<Handle>, opts: { skip?: string | false } = {}): void {
  describe(`SQL executor: ${name}`, { skip: opts.skip }, () => {
    test('one, all and run take ? placeholders; one is null without a row, run counts changed rows', async () => {
      const { sql, close } = await open()
      try {
        assert.equal(await sql.run('INSERT INTO kv (k, v) VALUES (?, ?), (?, ?)', ['a', 1, 'b', 2]), 2)
        assert.equal(await sql.one('SELECT v FROM kv WHERE k = ?', ['b'], num), 2)
        assert.equal(await sql.one('SELECT v FROM kv WHERE k = ?', ['none'], num), null)
        assert.deepEqual(await sql.all('SELECT v FROM kv WHERE v >= ? ORDER BY k', [1], num), [1, 2])
        assert.equal(await sql.run('UPDATE kv SET v = v + ? WHERE k = ?', [10, 'none']), 0)
      } finally {
        await close()
      }
    })

    test('a transaction commits every statement and resolves what its work returns', async () => {
      const { sql, close } = await open()
      try {
        const got = await sql.tx(function* () {
          yield* run('INSERT INTO kv (k, v) VALUES (?, ?)', ['a', 1])
          const v = yield* one(`SELECT v FROM kv WHERE k = ?${sql.dialect.forUpdate}`, ['a'], num)
          yield* run('UPDATE kv SET v = ? WHERE k = ?', [(v ?? 0) + 1, 'a'])
          return 'done'
        })
        assert.equal(got, 'done')
        assert.equal(await sql.one('SELECT v FROM kv WHERE k = ?', ['a'], num), 2)
      } finally {
        await close()
      }
    })

    test('a failing statement rolls the whole transaction back, rejects with the driver error, and ends the work', async () => {
      const { sql, close } = await open()
      try {
        await sql.run('INSERT INTO kv (k, v) VALUES (?, ?)', ['taken', 0])
        let resumed = false
        await assert.rejects(
          sql.tx(function* () {
            yield* run('INSERT INTO kv (k, v) VALUES (?, ?)', ['a', 1])
            yield* run('INSERT INTO kv (k, v) VALUES (?, ?)', ['taken', 1])
            resumed = true
          }),
          (err: unknown) => !(err instanceof NotFound),
        )
        assert.equal(resumed, false)
        assert.deepEqual(await sql.all('SELECT k FROM kv ORDER BY k', [], (r) => String(r.k)), ['taken'])
      } finally {
        await close()
      }
    })

    test('work that throws rolls back and rejects with its own error', async () => {
      const { sql, close } = await open()
      try {
        await assert.rejects(
          sql.tx(function* () {
            yield* run('INSERT INTO kv (k, v) VALUES (?, ?)', ['a', 1])
            yield* sql.dialect.serialize('executor-test')
            throw new NotFound('nothing here')
          }),
          NotFound,
        )
        assert.equal(await sql.one('SELECT v FROM kv WHERE k = ?', ['a'], num), null)
      } finally {
        await close()
      }
    })
  })
}

executorContract('sqlite', async () => {
  const db = new Database(':memory:')
  db.exec(CREATE)
  return {
    sql: new SqliteSql(db),
    close: async () => {
      db.close()
    },
  }
})

const pgSkip = await skipWithoutPostgres()
executorContract(
  'postgres',
  async () => {
    const schema = await freshPostgresSchema()
    const pool = new pg.Pool({ connectionString: schema.url, max: 2 })
    await pool.query(CREATE)
    return {
      sql: new PgSql(pool),
      close: async () => {
        await pool.end()
        await schema.drop()
      },
    }
  },
  { skip: pgSkip },
)

test('a SQLite transaction runs to its end before tx() returns: no other request can run inside it', async () => {
  const db = new Database(':memory:')
  db.exec(CREATE)
  try {
    const sql = new SqliteSql(db)
    const steps: string[] = []
    const done = sql.tx(function* () {
      yield* run('INSERT INTO kv (k, v) VALUES (?, ?)', ['a', 1])
      steps.push('inserted')
      yield* run('UPDATE kv SET v = ? WHERE k = ?', [2, 'a'])
      steps.push('updated')
    })
    // Synchronously, before any await: the transaction has already committed.
    steps.push('returned')
    assert.equal(db.inTransaction, false)
    assert.deepEqual(steps, ['inserted', 'updated', 'returned'])
    await done
    assert.equal(await sql.one('SELECT v FROM kv WHERE k = ?', ['a'], num), 2)
  } finally {
    db.close()
  }
})

test('numbered turns ? placeholders into $1, $2, … in order', () => {
  assert.equal(numbered('SELECT * FROM t WHERE a = ? AND (b, c) > (?, ?) LIMIT ?'), 'SELECT * FROM t WHERE a = $1 AND (b, c) > ($2, $3) LIMIT $4')
  assert.equal(numbered('SELECT 1'), 'SELECT 1')
})
