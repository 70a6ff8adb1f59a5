/**
 * Embedded store: one SQLite file (better-sqlite3, WAL). The repositories
 * are the shared SQL layer (../sql/repositories.ts); this file is its
 * executor and dialect for SQLite, plus opening the file, checkpoints and
 * the in-process lock. Every statement runs synchronously and resolves a
 * Promise, so callers see the same interface as the PostgreSQL store.
 * Statements are prepared once and cached by their SQL text.
 */
import { randomUUID } from 'node:crypto'
import { closeSync, openSync } from 'node:fs'
import { resolve } from 'node:path'
import Database from 'better-sqlite3'
import type { Dialect, Sql, Statement, Step } from '../sql/executor.js'
import { SqlStore } from '../sql/repositories.js'
import * as T from '../sql/rows.js'
import { storeError, type Row } from '../sql/rows.js'
import type { NewAuditEvent, Store } from '../types.js'
import { startCheckpointer, type Checkpointer } from './checkpointer.js'
import { migrateSqlite } from './migrations.js'

/** Rows per multi-row audit INSERT (10 columns each, far below SQLite's 32766 parameters). */
const AUDIT_ROWS_PER_INSERT = 32

/** Names held by tryWithLock in this process, keyed by database file and name. */
const HELD = new Set<string>()

const CHECKPOINT_INTERVAL_MS = 50
/** WAL length (frames of one page, 4 KiB by default) past which this connection completes a checkpoint so that the log restarts (checkpointer.ts). */
const WAL_RESTART_FRAMES = 4096

/** Resolves what `fn` returns, or rejects with what it throws. */
function settle<R>(fn: () => R): Promise<R> {
  try {
    return Promise.resolve(fn())
  } catch (err) {
    return Promise.reject(err)
  }
}

/**
 * Executor on one better-sqlite3 connection. A transaction runs its whole
 * generator inside `db.transaction(...).immediate()`: every statement is
 * answered synchronously, so no other request's statement can land inside
 * it, and BEGIN IMMEDIATE takes the write lock before the first read.
 * Exported for the executor tests; the store builds its own.
 */
export class SqliteSql implements Sql {
  readonly dialect: Dialect
  private readonly stmts = new Map<string, Database.Statement>()
  private readonly immediate: (work: () => Step<unknown>) => unknown

  constructor(private readonly db: Database.Database) {
    const inTx = db.transaction((work: () => Step<unknown>) => this.drive(work()))
    this.immediate = (work) => inTx.immediate(work)
    this.dialect = {
      forUpdate: '',
      // One connection, and BEGIN IMMEDIATE serializes writers across processes.
      serialize: function* (): Step<void> {
        /* no statement needed */
      },
      // AUTOINCREMENT keeps the highest seq ever assigned in sqlite_sequence, even after a purge.
      lastRevocationSeq: "SELECT seq FROM sqlite_sequence WHERE name = 'revocations'",
      nextRevocationSeq: "UPDATE sqlite_sequence SET seq = seq + 1 WHERE name = 'revocations' RETURNING seq",
      appendAudit: this.auditAppender(),
    }
  }

  one<R>(text: string, args: readonly unknown[], map: (r: Row) => R): Promise<R | null> {
    return settle(() => this.exec({ kind: 'one', text, args, map }) as R | null)
  }

  all<R>(text: string, args: readonly unknown[], map: (r: Row) => R): Promise<R[]> {
    return settle(() => this.exec({ kind: 'all', text, args, map }) as R[])
  }

  run(text: string, args: readonly unknown[]): Promise<number> {
    return settle(() => this.exec({ kind: 'run', text, args }) as number)
  }

  tx<T>(work: () => Step<T>): Promise<T> {
    return settle(() => this.immediate(work) as T)
  }

  /** Forgets the prepared statements (the connection is closing). */
  clear(): void {
    this.stmts.clear()
  }

  private st(text: string): Database.Statement {
    let s = this.stmts.get(text)
    if (!s) {
      s = this.db.prepare(text)
      this.stmts.set(text, s)
    }
    return s
  }

  private exec(s: Statement): unknown {
    const st = this.st(s.text)
    switch (s.kind) {
      case 'one': {
        const r = st.get(...s.args) as Row | undefined
        return r === undefined ? null : s.map(r)
      }
      case 'all':
        return (st.all(...s.args) as Row[]).map(s.map)
      case 'run':
        return st.run(...s.args).changes
    }
  }

  /** A failed statement throws out of the generator without resuming it; the transaction rolls back. */
  private drive<T>(work: Step<T>): T {
    let r = work.next()
    while (!r.done) r = work.next(this.exec(r.value))
    return r.value
  }

  /**
   * Hot path (every token issuance): a group-committed batch is written as
   * one multi-row INSERT (its own transaction), or, past AUDIT_ROWS_PER_INSERT
   * rows, as INSERTs of up to AUDIT_ROWS_PER_INSERT rows in one transaction
   * (one statement call per chunk instead of per row). Statements are
   * prepared once per chunk size, so at most AUDIT_ROWS_PER_INSERT exist.
   */
  private auditAppender(): Dialect['appendAudit'] {
    const inserts: Database.Statement[] = []
    const insertOf = (rows: number): Database.Statement => {
      let s = inserts[rows]
      if (!s) {
        const one = `(${T.auditEvents.columns.map(() => '?').join(', ')})`
        s = this.db.prepare(
          `INSERT INTO ${T.auditEvents.table} (${T.auditEvents.columns.join(', ')}) VALUES ${Array.from({ length: rows }, () => one).join(', ')}`,
        )
        inserts[rows] = s
      }
      return s
    }
    // One INSERT of rows [at, at + n): their ids, written into `ids` (AUTOINCREMENT hands one INSERT's rows consecutive ids).
    const insertRows = (events: readonly NewAuditEvent[], at: number, n: number, ids: number[]): void => {
      const params: unknown[] = []
      for (let i = at; i < at + n; i++) {
        for (const v of T.auditEvents.toParams(events[i]!)) params.push(v)
      }
      const last = Number(insertOf(n).run(params).lastInsertRowid)
      for (let i = 0; i < n; i++) ids[at + i] = last - n + 1 + i
    }
    const appendTx = this.db.transaction((events: readonly NewAuditEvent[]): number[] => {
      const ids = new Array<number>(events.length)
      for (let at = 0; at < events.length; at += AUDIT_ROWS_PER_INSERT) insertRows(events, at, Math.min(AUDIT_ROWS_PER_INSERT, events.length - at), ids)
      return ids
    })
    const appendOne = (events: readonly NewAuditEvent[]): number[] => {
      const ids = new Array<number>(events.length)
      insertRows(events, 0, events.length, ids)
      return ids
    }
    // A batch that fits one INSERT is its own transaction: one statement inside BEGIN … COMMIT would
    // also keep a statement journal (a temporary file written for every page it touches) to undo it alone.
    return (events) => settle(() => (events.length <= AUDIT_ROWS_PER_INSERT ? appendOne(events) : appendTx.immediate(events)))
  }
}

/** Options of {@link openSqliteStore}. */
export interface SqliteStoreOptions {
  /** How long a writer waits for another process's write lock (ms). Default 5000. */
  busyTimeoutMs?: number
}

/** Opens the file with the pragmas this store relies on and applies migrations. */
function openDatabase(path: string, memory: boolean, opts: SqliteStoreOptions): Database.Database {
  let db: Database.Database | undefined
  try {
    // The file holds key material (encrypted) and secret hashes: create it
    // owner-only; SQLite gives its -wal and -shm files the same mode.
    if (!memory) closeSync(openSync(path, 'a', 0o600))
    db = new Database(path)
    db.pragma('journal_mode = WAL')
    // NORMAL under WAL: a commit survives a process crash; only an OS crash
    // or power loss can drop the last transactions, never corrupt the file.
    db.pragma('synchronous = NORMAL')
    db.pragma(`busy_timeout = ${Math.max(0, Math.floor(opts.busyTimeoutMs ?? 5000))}`)
    db.pragma('foreign_keys = ON')
    // Each statement of a multi-statement transaction (a decision-log batch: INSERTs of 100 rows) keeps a
    // statement journal so that it alone can be undone; past 64 KiB SQLite spills it to a temporary file,
    // a write(2) for every page the statement touches (9 % of a control plane's CPU under decision-log
    // ingest, issue 20). In memory it never spills: it holds the pages one statement changes. Sorts for
    // CREATE INDEX still go to temporary files.
    db.pragma('temp_store = MEMORY')
    // 32 MiB of page cache instead of 2: the audit table's eleven query indexes (issue 17) are each
    // appended to at every group commit, and their right edges then stay in memory.
    db.pragma('cache_size = -32768')
    migrateSqlite(db)
    if (!memory) {
      // Checkpoints run every 50 ms (small, frequent ones; startCheckpoints) instead of inside whichever commit
      // crosses the 1000-page mark: an automatic checkpoint stalls that commit
      // (and every token waiting on its audit batch) for tens of ms, the
      // issuance p99. journal_size_limit bounds the WAL file between them.
      db.pragma('wal_autocheckpoint = 0')
      db.pragma('journal_size_limit = 33554432')
    }
    return db
  } catch (err) {
    try {
      db?.close()
    } catch {
      /* already failing; report the first error */
    }
    throw storeError(err, 'database')
  }
}

/** The embedded store. Construct with {@link openSqliteStore}. */
export class SqliteStore extends SqlStore {
  readonly kind = 'sqlite' as const

  private readonly db: Database.Database
  private readonly sql: SqliteSql
  private readonly lockKey: string
  private closed = false
  private checkpointTimer: NodeJS.Timeout | null = null
  private checkpointer: Checkpointer | null = null
  private readonly path: string | null

  constructor(path: string, opts: SqliteStoreOptions = {}) {
    const memory = path === ':memory:' || path === ''
    const db = openDatabase(path, memory, opts)
    const sql = new SqliteSql(db)
    super(sql)
    this.db = db
    this.sql = sql
    this.lockKey = memory ? `mem:${randomUUID()}` : resolve(path)
    this.path = memory ? null : path
  }

  /** In-process mutex per database file and name: the embedded store has one process. */
  override async tryWithLock<R>(name: string, fn: () => Promise<R>): Promise<{ ran: true; value: R } | { ran: false }> {
    const key = `${this.lockKey}\u0000${name}`
    if (HELD.has(key)) return { ran: false }
    HELD.add(key)
    try {
      return { ran: true, value: await fn() }
    } finally {
      HELD.delete(key)
    }
  }

  /**
   * Starts WAL checkpoints every 50 ms (small, frequent ones; see the
   * constructor): on a worker thread with its own connection, or, if that
   * cannot start, from a timer on this thread.
   */
  async startCheckpoints(): Promise<void> {
    if (this.path === null || this.checkpointer !== null || this.checkpointTimer !== null) return
    try {
      this.checkpointer = await startCheckpointer(this.path, {
        intervalMs: CHECKPOINT_INTERVAL_MS,
        restartFrames: WAL_RESTART_FRAMES,
        onLongLog: () => this.completeCheckpoint(),
      })
    } catch {
      const db = this.db
      this.checkpointTimer = setInterval(() => {
        try {
          db.pragma('wal_checkpoint(PASSIVE)')
        } catch {
          /* busy or closing: the next tick retries */
        }
      }, CHECKPOINT_INTERVAL_MS)
      this.checkpointTimer.unref()
    }
  }

  /**
   * A checkpoint from this connection, between two of its transactions
   * (they are all synchronous): as the only writer it copies every frame, so
   * its next write transaction starts the log over.
   */
  private completeCheckpoint(): void {
    if (this.closed) return
    try {
      this.db.pragma('wal_checkpoint(PASSIVE)')
    } catch {
      /* busy (the worker is mid-pass) or closing: its next report retries */
    }
  }

  /** True when checkpoints run on the worker thread (tests). */
  get checkpointsOffThread(): boolean {
    return this.checkpointer !== null
  }

  override async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    if (this.checkpointTimer) clearInterval(this.checkpointTimer)
    // The worker's connection closes first, so this one is the last and SQLite folds the WAL back on close.
    if (this.checkpointer) await this.checkpointer.close().catch(() => {})
    this.sql.clear()
    try {
      this.db.close()
    } catch (err) {
      throw storeError(err, 'database')
    }
  }
}

/**
 * Opens (creating if needed) the SQLite store at `path` and applies pending
 * migrations. `:memory:` gives a private in-memory database.
 */
export async function openSqliteStore(path: string, opts: SqliteStoreOptions = {}): Promise<Store> {
  const store = new SqliteStore(path, opts)
  await store.startCheckpoints()
  return store
}
