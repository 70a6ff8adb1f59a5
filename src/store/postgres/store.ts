/**
 * PostgreSQL store for scale-out: several control planes share one database.
 * The repositories are the shared SQL layer (../sql/repositories.ts); this
 * file is its executor and dialect for PostgreSQL, plus connecting,
 * migrating and session advisory locks. Table names are unqualified, so the
 * store lives in whatever schema the connection's search_path names.
 * Statements are named (prepared once per connection by pg).
 */
import { createHash } from 'node:crypto'
import pg from 'pg'
import type { Logger } from '../../observability/logger.js'
import {
  all,
  AUDIT_HEAD_SQL,
  AUDIT_TIME_MARK_SQL,
  auditTimeMark,
  checkFollows,
  numbered,
  one,
  run,
  type ChainHead,
  type Dialect,
  type Sql,
  type Statement,
  type Step,
} from '../sql/executor.js'
import { SqlStore } from '../sql/repositories.js'
import * as T from '../sql/rows.js'
import { storeError, type Row } from '../sql/rows.js'
import type { NewAuditEvent, Store } from '../types.js'
import { LOCK_CLASS, migratePostgres } from './migrations.js'

type Queryable = pg.Pool | pg.PoolClient

const INT8_OID = 20
/** Every BIGINT here is an epoch-ms time, a count or a sequence, all far below 2^53. */
const types = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === INT8_OID ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
}

/** Options of {@link openPostgresStore}. */
export interface PostgresStoreOptions {
  /** Where idle-connection errors are reported. */
  logger?: Logger
  /** Pool size (default 10). */
  max?: number
}

interface Prepared {
  name: string
  text: string
}

/** Serializes a section across control planes until the transaction ends. */
function* xactLock(key: string): Step<void> {
  yield* run("SELECT pg_advisory_xact_lock(?, hashtext(coalesce(current_schema(), '') || ':' || ?))", [LOCK_CLASS, key])
}

/** One statement per audit batch whatever its size: parallel arrays through unnest. */
const AUDIT_CASTS = ['text', 'bigint', 'text', 'text', 'text', 'text', 'text', 'bigint', 'text', 'text']
const AUDIT_INSERT = `INSERT INTO audit_events (${T.auditEvents.columns.join(', ')})
  SELECT * FROM unnest(${AUDIT_CASTS.map((t) => `?::${t}[]`).join(', ')}) RETURNING id, chain_id, chain_seq`

/**
 * Executor on a pg pool: autocommit statements on the pool, a transaction on
 * one checked-out client. Exported for the executor tests; the store builds its own.
 */
export class PgSql implements Sql {
  readonly dialect: Dialect = {
    forUpdate: ' FOR UPDATE',
    serialize: xactLock,
    // The sequence remembers the highest seq handed out, even after a purge.
    lastRevocationSeq: 'SELECT CASE WHEN is_called THEN last_value ELSE 0 END AS seq FROM revocations_seq_seq',
    nextRevocationSeq: "SELECT nextval('revocations_seq_seq') AS seq",
    appendAudit: (events, follows) => this.appendAudit(events, follows),
    // Batches on different pool connections could commit out of order: one at a time.
    auditAppendDepth: () => 1,
    decisionKinds: 'literal',
  }
  private readonly prepared = new Map<string, Prepared>()
  private generation = 0

  constructor(private readonly pool: pg.Pool) {}

  one<R>(text: string, args: readonly unknown[], map: (r: Row) => R): Promise<R | null> {
    return this.exec(this.pool, { kind: 'one', text, args, map }) as Promise<R | null>
  }

  all<R>(text: string, args: readonly unknown[], map: (r: Row) => R): Promise<R[]> {
    return this.exec(this.pool, { kind: 'all', text, args, map }) as Promise<R[]>
  }

  run(text: string, args: readonly unknown[]): Promise<number> {
    return this.exec(this.pool, { kind: 'run', text, args }) as Promise<number>
  }

  async tx<T>(work: () => Step<T>): Promise<T> {
    const c = await checkOut(this.pool)
    let broken: Error | undefined
    try {
      await c.query('BEGIN')
      try {
        // A failed statement aborts a PostgreSQL transaction, so the
        // generator is not resumed after one: the error rolls back.
        const steps = work()
        let r = steps.next()
        while (!r.done) r = steps.next(await this.exec(c, r.value))
        await c.query('COMMIT')
        return r.value
      } catch (err) {
        await c.query('ROLLBACK').catch((e: Error) => {
          broken = e
        })
        throw err
      }
    } finally {
      c.release(broken ?? c.lostWith())
    }
  }

  private appendAudit(events: readonly NewAuditEvent[], follows?: ChainHead): Promise<number[]> {
    const cols: unknown[][] = T.auditEvents.columns.map(() => [])
    for (const e of events) {
      for (const [i, v] of T.auditEvents.toParams(e).entries()) cols[i]!.push(v)
    }
    return this.tx(function* () {
      // Ids are taken after the lock, so they follow commit order and a
      // reader paging by `id > cursor` never skips a later-committed event.
      yield* xactLock('audit.append')
      if (follows) checkFollows(events[0]!.chainId, follows, yield* one(AUDIT_HEAD_SQL, [events[0]!.chainId], (r) => r))
      const rows = yield* all(AUDIT_INSERT, cols, (r) => r)
      const byKey = new Map(rows.map((r) => [`${String(r.chain_id)}\u0000${Number(r.chain_seq)}`, Number(r.id)]))
      const ids = events.map((e) => byKey.get(`${e.chainId}\u0000${e.chainSeq}`) as number)
      const mark = auditTimeMark(events)
      yield* run(AUDIT_TIME_MARK_SQL, [ids.reduce((a, b) => Math.min(a, b)), mark.top, mark.newest])
      return ids
    })
  }

  private async exec(db: Queryable, s: Statement): Promise<unknown> {
    const res = await this.query(db, s.text, s.args)
    switch (s.kind) {
      case 'one': {
        const r = res.rows[0]
        return r === undefined ? null : s.map(r)
      }
      case 'all':
        return res.rows.map(s.map)
      case 'run':
        return res.rowCount ?? 0
    }
  }

  private stmt(text: string): Prepared {
    let p = this.prepared.get(text)
    if (!p) {
      const h = createHash('sha1').update(text).digest('hex').slice(0, 20)
      p = { name: `aegis_${this.generation}_${h}`, text: numbered(text) }
      this.prepared.set(text, p)
    }
    return p
  }

  private async query(db: Queryable, text: string, args: readonly unknown[]): Promise<pg.QueryResult<Row>> {
    const p = this.stmt(text)
    const values = args as unknown[]
    try {
      return await db.query<Row>({ name: p.name, text: p.text, values })
    } catch (err) {
      // A migration run by a newer control plane changed a table under our
      // named statements ("cached plan must not change result type"):
      // prepare everything afresh under new names, and retry once when not
      // inside a transaction (an aborted transaction cannot go on).
      if ((err as { code?: unknown }).code !== '0A000') throw err
      if (this.prepared.get(text) === p) {
        this.generation += 1
        this.prepared.clear()
      }
      if (db !== this.pool) throw err
      const fresh = this.stmt(text)
      return db.query<Row>({ name: fresh.name, text: fresh.text, values })
    }
  }
}

/** The PostgreSQL store. Construct with {@link openPostgresStore}. */
export class PostgresStore extends SqlStore {
  readonly kind = 'postgres' as const

  private readonly held = new Set<string>()
  private closed = false

  /** Use {@link openPostgresStore}, which also applies migrations. */
  constructor(private readonly pool: pg.Pool) {
    super(new PgSql(pool))
  }

  /**
   * Session advisory lock `pg_try_advisory_lock(hashtext(schema || ':' || name))`
   * (advisory locks are database-wide: the schema keeps deployments or test
   * runs that share a database in separate schemas from blocking each other) on a client
   * held for the duration of `fn`, then unlocked. Never waits for the lock.
   * Errors of `fn` propagate unchanged.
   */
  override async tryWithLock<R>(name: string, fn: () => Promise<R>): Promise<{ ran: true; value: R } | { ran: false }> {
    // Session locks are re-entrant per connection, so refuse a nested or
    // concurrent call of this store before asking the database.
    if (this.held.has(name)) return { ran: false }
    this.held.add(name)
    let client: CheckedOutClient | undefined
    let locked = false
    let broken: Error | undefined
    try {
      try {
        client = await checkOut(this.pool)
        const r = await client.query<{ ok: boolean }>("SELECT pg_try_advisory_lock(hashtext(coalesce(current_schema(), '') || ':' || $1)) AS ok", [name])
        locked = r.rows[0]?.ok === true
      } catch (err) {
        throw storeError(err, 'lock')
      }
      if (!locked) return { ran: false }
      return { ran: true, value: await fn() }
    } finally {
      this.held.delete(name)
      if (client) {
        if (locked) {
          // A failed unlock leaves the lock on this session: destroy the
          // connection so the server releases it.
          await client.query("SELECT pg_advisory_unlock(hashtext(coalesce(current_schema(), '') || ':' || $1))", [name]).catch((e: Error) => {
            broken = e
          })
        }
        client.release(broken ?? client.lostWith())
      }
    }
  }

  override async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    await this.pool.end()
  }
}

/** A pooled client held by the store, which knows whether its connection was lost meanwhile. */
interface CheckedOutClient extends pg.PoolClient {
  /** The error that ended the connection while checked out, or undefined. */
  lostWith(): Error | undefined
}

/**
 * Checks a client out of the pool with an `error` listener for as long as it
 * is held. The pool listens only to idle clients: without this, a database
 * that goes away while a lock or transaction is held emits an unhandled
 * `error` and the process exits. The error is kept and the client released
 * as broken; the pending query rejects on its own.
 */
async function checkOut(pool: pg.Pool): Promise<CheckedOutClient> {
  const client = await pool.connect()
  let lost: Error | undefined
  const onError = (err: Error): void => {
    lost = err
  }
  client.on('error', onError)
  const release = client.release.bind(client)
  return Object.assign(client, {
    lostWith: () => lost,
    release: (err?: Error | boolean) => {
      client.off('error', onError)
      release(err)
    },
  })
}

/**
 * Connects to PostgreSQL at `url` and applies pending migrations (under an
 * advisory lock, so control planes starting together do not race). Tables
 * are created in the schema the connection's search_path names.
 */
export async function openPostgresStore(url: string, opts: PostgresStoreOptions = {}): Promise<Store> {
  const pool = new pg.Pool({ connectionString: url, max: opts.max ?? 10, types })
  // An idle client's error must not crash the process; the next query reports it.
  pool.on('error', (err) => opts.logger?.warn({ err: { message: err.message } }, 'postgres idle client error'))
  try {
    const c = await checkOut(pool)
    try {
      await migratePostgres(c)
    } finally {
      c.release(c.lostWith())
    }
  } catch (err) {
    await pool.end().catch(() => {})
    throw storeError(err, 'database')
  }
  return new PostgresStore(pool)
}
