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
import {
  AUDIT_HEAD_SQL,
  AUDIT_TIME_MARK_SQL,
  auditTimeMark,
  checkFollows,
  type ChainHead,
  type Dialect,
  type Sql,
  type Statement,
  type Step,
} from '../sql/executor.js'
import { DECISION_INSERT, SqlStore } from '../sql/repositories.js'
import * as T from '../sql/rows.js'
import { storeError, type Row } from '../sql/rows.js'
import type { DecisionRecord, NewAuditEvent, Store } from '../types.js'
import { AppendThread, type AuditBatch, type DecisionBatch } from './append-thread.js'
import { startCheckpointer, type Checkpointer } from './checkpointer.js'
import { settle } from './settle.js'
import { migrateSqlite } from './migrations.js'

/** Rows per multi-row audit INSERT (10 columns each, far below SQLite's 32766 parameters). */
const AUDIT_ROWS_PER_INSERT = 32

/** Names held by tryWithLock in this process, keyed by database file and name. */
const HELD = new Set<string>()

const CHECKPOINT_INTERVAL_MS = 50
/** WAL length (frames of one page, 4 KiB by default) past which this connection completes a checkpoint so that the log restarts (checkpointer.ts). */
const WAL_RESTART_FRAMES = 4096
/** Longest hold of writes for the checkpoint worker's finishing pass; past it writes go on and the next report retries. */
const FINISH_TIMEOUT_MS = 2000

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
  /** Audit and decision-log batches go to this thread while it lives (attachAppendThread); every other write then waits for its batches. */
  private appendThread: AppendThread | null = null
  /** Set while writes are held (holdWrites): every write and audit batch waits for it, in the order they came. */
  private held: Promise<void> | null = null

  constructor(private readonly db: Database.Database) {
    const inTx = db.transaction((work: () => Step<unknown>) => this.drive(work()))
    this.immediate = (work) => inTx.immediate(work)
    const appendInPlace = this.auditAppender()
    this.dialect = {
      forUpdate: '',
      // One connection, and BEGIN IMMEDIATE serializes writers across processes.
      serialize: function* (): Step<void> {
        /* no statement needed */
      },
      // AUTOINCREMENT keeps the highest seq ever assigned in sqlite_sequence, even after a purge.
      lastRevocationSeq: "SELECT seq FROM sqlite_sequence WHERE name = 'revocations'",
      nextRevocationSeq: "UPDATE sqlite_sequence SET seq = seq + 1 WHERE name = 'revocations' RETURNING seq",
      appendAudit: (events, follows) =>
        this.offLoop(
          (thread) => thread.append(auditBatch(events, follows)),
          () => this.write(() => appendInPlace(events, follows)),
        ),
      // Two: one batch written while the next is built and sent.
      auditAppendDepth: () => (this.appendThread?.alive ? 2 : 1),
      appendDecisions: (records, inPlace) => this.offLoop((thread) => thread.appendDecisions(decisionBatch(records)), inPlace),
      decisionKinds: 'term',
    }
  }

  /**
   * A batch for the append thread: after a hold (holdWrites), on the thread
   * while it lives, else `inPlace` on this connection.
   */
  private offLoop<R>(onThread: (thread: AppendThread) => Promise<R>, inPlace: () => Promise<R>): Promise<R> {
    if (this.held) return this.held.then(() => this.offLoop(onThread, inPlace))
    const thread = this.appendThread
    return thread?.alive ? onThread(thread) : inPlace()
  }

  /** From now on audit and decision-log batches are written on `thread` (SqliteStore.startThreads). */
  attachAppendThread(thread: AppendThread): void {
    this.appendThread = thread
  }

  one<R>(text: string, args: readonly unknown[], map: (r: Row) => R): Promise<R | null> {
    const run = () => this.exec({ kind: 'one', text, args, map }) as R | null
    // Reads never wait (WAL): only a statement that may write (UPDATE … RETURNING) waits for the append thread's batches.
    return text.startsWith('SELECT') ? settle(run) : this.write(run)
  }

  all<R>(text: string, args: readonly unknown[], map: (r: Row) => R): Promise<R[]> {
    const run = () => this.exec({ kind: 'all', text, args, map }) as R[]
    return text.startsWith('SELECT') ? settle(run) : this.write(run)
  }

  run(text: string, args: readonly unknown[]): Promise<number> {
    return this.write(() => this.exec({ kind: 'run', text, args }) as number)
  }

  tx<T>(work: () => Step<T>): Promise<T> {
    return this.write(() => this.immediate(work) as T)
  }

  /** A write on this connection (or a checkpoint), after the append thread's batches in flight, which hold the write lock. */
  write<R>(fn: () => R): Promise<R> {
    if (this.held) return this.held.then(() => this.write(fn))
    const thread = this.appendThread
    return thread?.alive && thread.pending > 0 ? thread.exclusive(fn) : settle(fn)
  }

  /**
   * Runs `during` once no write is in flight on either connection, holding
   * every write and audit batch that comes meanwhile (they go afterwards, in
   * order); reads go on. The event loop stays free while `during` waits on
   * another thread's work.
   */
  async holdWrites(during: () => Promise<unknown>): Promise<void> {
    let release = (): void => {}
    await this.write(() => {
      this.held = new Promise<void>((r) => {
        release = r
      })
    })
    try {
      // A batch handed over while this waited was already past the hold: it lands first.
      const thread = this.appendThread
      if (thread?.alive && thread.pending > 0) await thread.exclusive(() => undefined)
      await during()
    } finally {
      this.held = null
      release()
    }
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
      // The arguments as one array (bound in order): spreading a batch INSERT's thousands of values into a call copied them all.
      case 'one': {
        const r = st.get(s.args) as Row | undefined
        return r === undefined ? null : s.map(r)
      }
      case 'all':
        return (st.all(s.args) as Row[]).map(s.map)
      case 'run':
        return st.run(s.args).changes
    }
  }

  /** A failed statement throws out of the generator without resuming it; the transaction rolls back. */
  private drive<T>(work: Step<T>): T {
    let r = work.next()
    while (!r.done) r = work.next(this.exec(r.value))
    return r.value
  }

  /**
   * Audit batches on this connection (no append thread: in-memory
   * databases, or the thread failed): in one transaction, the `follows`
   * check, INSERTs of up to AUDIT_ROWS_PER_INSERT rows (one statement call
   * per chunk instead of per row) and the batch's time mark. Statements are
   * prepared once per chunk size, so at most AUDIT_ROWS_PER_INSERT exist.
   */
  private auditAppender(): (events: readonly NewAuditEvent[], follows: ChainHead | undefined) => number[] {
    const inserts: Database.Statement[] = []
    const insertOf = (rows: number): Database.Statement => {
      let s = inserts[rows]
      if (!s) {
        s = this.db.prepare(`${AUDIT_INSERT_PREFIX}${Array.from({ length: rows }, () => AUDIT_ROW_PLACEHOLDERS).join(', ')}`)
        inserts[rows] = s
      }
      return s
    }
    // One INSERT of rows [at, at + n): their ids, written into `ids` (AUTOINCREMENT hands one INSERT's rows consecutive ids).
    const insertRows = (events: readonly NewAuditEvent[], at: number, n: number, ids: number[]): void => {
      const last = Number(insertOf(n).run(T.flatParams(T.auditEvents, events, at, n)).lastInsertRowid)
      for (let i = 0; i < n; i++) ids[at + i] = last - n + 1 + i
    }
    const appendTx = this.db.transaction((events: readonly NewAuditEvent[], follows: ChainHead | undefined): number[] => {
      if (follows) checkFollows(events[0]!.chainId, follows, this.st(AUDIT_HEAD_SQL).get(events[0]!.chainId) as Row | undefined)
      const ids = new Array<number>(events.length)
      for (let at = 0; at < events.length; at += AUDIT_ROWS_PER_INSERT) insertRows(events, at, Math.min(AUDIT_ROWS_PER_INSERT, events.length - at), ids)
      const mark = auditTimeMark(events)
      this.st(AUDIT_TIME_MARK_SQL).run([ids[0], mark.top, mark.newest])
      return ids
    })
    return (events, follows) => appendTx.immediate(events, follows)
  }
}

const AUDIT_INSERT_PREFIX = `INSERT INTO ${T.auditEvents.table} (${T.auditEvents.columns.join(', ')}) VALUES `
const AUDIT_ROW_PLACEHOLDERS = `(${T.auditEvents.columns.map(() => '?').join(', ')})`

/** A batch in the append thread's form: the rows' parameters flattened. */
function auditBatch(events: readonly NewAuditEvent[], follows: ChainHead | undefined): AuditBatch {
  const params = T.flatParams(T.auditEvents, events, 0, events.length)
  const width = T.auditEvents.columns.length
  return { kind: 'audit', chainId: events[0]!.chainId, rows: events.length, width, params, mark: auditTimeMark(events), ...(follows ? { follows } : {}) }
}

/** A decision-log batch in the append thread's form: the records' parameters flattened. */
function decisionBatch(records: readonly DecisionRecord[]): DecisionBatch {
  return { kind: 'decisions', rows: records.length, width: T.decisions.columns.length, params: T.flatParams(T.decisions, records, 0, records.length) }
}

/** Options of {@link openSqliteStore}. */
export interface SqliteStoreOptions {
  /** How long a writer waits for another process's write lock (ms). Default 5000. */
  busyTimeoutMs?: number
  /** Write audit and decision-log batches on their own thread (append-thread.ts). Default true; in-memory databases never do. */
  appendThread?: boolean
  /**
   * Start the checkpoint and append threads at all. Default true. False for
   * a short-lived command (the CLI): each thread costs about 20 ms to start,
   * and the last connection to close folds the WAL back anyway.
   */
  threads?: boolean
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
  private appendThread: AppendThread | null = null
  /** A finishing checkpoint is under way (finishCheckpoint). */
  private finishing = false
  private readonly path: string | null

  constructor(
    path: string,
    private readonly opts: SqliteStoreOptions = {},
  ) {
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
   * Starts the threads of a file database: WAL checkpoints every 50 ms
   * (small, frequent ones; see openDatabase) on a worker thread with its own
   * connection, or, if that cannot start, from a timer on this thread; and
   * the append thread (append-thread.ts) unless `opts.appendThread` is false
   * or it cannot start (then audit and decision-log batches are written in place).
   */
  async startThreads(): Promise<void> {
    if (this.path === null || this.checkpointer !== null || this.checkpointTimer !== null) return
    try {
      this.checkpointer = await startCheckpointer(this.path, {
        intervalMs: CHECKPOINT_INTERVAL_MS,
        restartFrames: WAL_RESTART_FRAMES,
        onLongLog: () => void this.finishCheckpoint(),
      })
    } catch {
      this.checkpointTimer = setInterval(() => void this.finishCheckpoint(), CHECKPOINT_INTERVAL_MS)
      this.checkpointTimer.unref()
    }
    if (this.opts.appendThread === false) return
    try {
      this.appendThread = await AppendThread.start({
        path: this.path,
        busyTimeoutMs: Math.max(0, Math.floor(this.opts.busyTimeoutMs ?? 5000)),
        insertPrefix: AUDIT_INSERT_PREFIX,
        rowPlaceholders: AUDIT_ROW_PLACEHOLDERS,
        rowsPerInsert: AUDIT_ROWS_PER_INSERT,
        headSql: AUDIT_HEAD_SQL,
        timeMarkSql: AUDIT_TIME_MARK_SQL,
        decisions: DECISION_INSERT,
      })
      this.sql.attachAppendThread(this.appendThread)
    } catch {
      /* audit batches stay on this connection */
    }
  }

  /**
   * The log passed WAL_RESTART_FRAMES: one checkpoint with no write in
   * flight copies every frame, and the next write transaction, on either
   * connection, starts the log over. With the checkpoint worker, writes are
   * held (SqliteSql.holdWrites) while the worker makes that pass; on this
   * thread the copy and its two fsyncs stalled every request (13 % of a
   * control plane's loop under decision-log ingest, issue 20). Without the
   * worker it runs here, between two transactions. Resolves true when
   * the pass ran (on the worker: and copied every frame). Public for tests.
   */
  finishCheckpoint(): Promise<boolean> {
    if (this.closed || this.finishing) return Promise.resolve(false)
    this.finishing = true
    const worker = this.checkpointer
    let ok = false
    const done = worker
      ? this.sql.holdWrites(async () => {
          ok = await worker.finish(FINISH_TIMEOUT_MS)
        })
      : this.sql.write(() => {
          if (this.closed) return
          this.db.pragma('wal_checkpoint(PASSIVE)')
          ok = true
        })
    return done
      .catch(() => {
        /* closing, or busy: the next report or tick retries */
      })
      .then(() => {
        this.finishing = false
        if (!this.closed) worker?.ownerDone()
        return ok
      })
  }

  /** True when audit and decision-log batches are written on the append thread (tests). */
  get appendOffThread(): boolean {
    return this.appendThread?.alive ?? false
  }

  /** True when checkpoints run on the worker thread (tests). */
  get checkpointsOffThread(): boolean {
    return this.checkpointer !== null
  }

  override async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    if (this.checkpointTimer) clearInterval(this.checkpointTimer)
    // The threads' connections close first (the append thread's after its last batch), so this one is the last and
    // SQLite folds the WAL back on close.
    if (this.appendThread) await this.appendThread.close().catch(() => {})
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
  if (opts.threads !== false) await store.startThreads()
  return store
}
