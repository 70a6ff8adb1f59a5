import { createRequire } from 'node:module'
import { Worker } from 'node:worker_threads'
import type { AuditTimeMark, ChainHead } from '../sql/executor.js'
import { Conflict } from '../../errors.js'
import { settle } from './settle.js'

/** The thread's code for a batch whose `follows` is not the stored head (checkFollows in place). */
const CHAIN_MOVED = 'AEGIS_CHAIN_MOVED'

/**
 * Writes audit batches and decision-log batches from a worker thread with
 * its own connection, so the event loop neither runs their INSERTs nor
 * maintains the tables' query indexes: the audit table's (issue 17; 25 µs
 * a row with eleven indexes, before migration 15 took it to five), the
 * decision log's eight, 9 µs a row, which held every other request (a
 * gateway's decisions too, in one process) for 5 ms per upload of 500
 * (issue 20). Batches are written strictly in the order they were handed
 * over, in BEGIN IMMEDIATE transactions. An audit batch has one of its own:
 * it first checks the chain head it `follows` (a writer can keep two
 * batches in flight, the second chained on the first, and the second fails
 * whenever the first did) and ends with its time mark (migration 15).
 * Grouping audit batches would make each of those two wait for the other.
 * A decision batch skips records already stored (a retried upload) and
 * answers how many it stored. Decision batches queued behind one another
 * (uploads of several gateways at once) share one transaction, each in its
 * own savepoint so that one that fails is undone alone, up to
 * DECISION_GROUP_MAX; each is answered after that commit. Their index
 * pages then reach the log once per group instead of once per batch (with
 * four uploads in flight, about 30 % fewer bytes and write(2) calls per
 * decision: npm run bench -- decision-log).
 *
 * The owner's other writes would otherwise wait for the thread's write lock
 * in SQLite's busy handler, sleeping on the event loop; they go through
 * `exclusive` instead, which runs them once no batch is in flight and holds
 * new batches back until they ran.
 *
 * Eval'd CommonJS, as checkpointer.ts, so the same code runs from dist/ and
 * under tsx; the SQL comes from the owner.
 */
const WORKER_SOURCE = `
const { parentPort, workerData, receiveMessageOnPort } = require('node:worker_threads')
const Database = require(workerData.driver)
const db = new Database(workerData.path)
db.pragma('busy_timeout = ' + workerData.busyTimeoutMs)
db.pragma('synchronous = NORMAL')
db.pragma('temp_store = MEMORY')
db.pragma('cache_size = -32768')
db.pragma('wal_autocheckpoint = 0')
const head = db.prepare(workerData.headSql)
const timeMark = db.prepare(workerData.timeMarkSql)
const inserts = []
const insertOf = (rows) => inserts[rows] ??= db.prepare(workerData.insertPrefix + Array.from({ length: rows }, () => workerData.rowPlaceholders).join(', '))
const append = db.transaction((m) => {
  if (m.follows) {
    const stored = head.get(m.chainId)
    const seq = stored ? Number(stored.chain_seq) : 0
    if (seq !== m.follows.seq || (stored && stored.hash !== m.follows.hash)) {
      const err = new Error('audit chain ' + m.chainId + ' is at ' + seq + ', not at ' + m.follows.seq + ' where this batch follows')
      err.code = '${CHAIN_MOVED}'
      throw err
    }
  }
  const ids = new Array(m.rows)
  for (let at = 0; at < m.rows; at += workerData.rowsPerInsert) {
    const n = Math.min(workerData.rowsPerInsert, m.rows - at)
    const last = Number(insertOf(n).run(m.params.slice(at * m.width, (at + n) * m.width)).lastInsertRowid)
    for (let i = 0; i < n; i++) ids[at + i] = last - n + 1 + i
  }
  timeMark.run([ids[0], m.mark.top, m.mark.newest])
  return ids
})
const d = workerData.decisions
const decisionInserts = []
const decisionInsertOf = (rows) =>
  decisionInserts[rows] ??= db.prepare(d.insertPrefix + Array.from({ length: rows }, () => d.rowPlaceholders).join(', ') + d.insertSuffix)
// Inside a group's transaction this runs as a SAVEPOINT: a batch that fails is undone alone.
const appendDecisions = db.transaction((m) => {
  let stored = 0
  for (let at = 0; at < m.rows; at += d.rowsPerInsert) {
    const n = Math.min(d.rowsPerInsert, m.rows - at)
    stored += decisionInsertOf(n).run(m.params.slice(at * m.width, (at + n) * m.width)).changes
  }
  return stored
})
const begin = db.prepare('BEGIN IMMEDIATE')
const commit = db.prepare('COMMIT')
const rollback = db.prepare('ROLLBACK')
const failure = (err) => ({ error: { message: String(err && err.message), code: err && err.code } })
let commits = 0
// Decision batches queued behind the first, taken once its transaction holds the write lock (so those that
// came while it waited for the lock join too); returns the first message it took and could not add.
const writeDecisionGroup = (first) => {
  try {
    begin.run()
  } catch (err) {
    parentPort.postMessage(failure(err))
    return undefined
  }
  const batches = [first]
  let left
  while (batches.length < workerData.decisionGroupMax) {
    const next = receiveMessageOnPort(parentPort)
    if (next === undefined) break
    if (next.message === 'close' || next.message.kind !== 'decisions') {
      left = next.message
      break
    }
    batches.push(next.message)
  }
  let answers = []
  for (const m of batches) {
    try {
      answers.push({ stored: appendDecisions(m) })
    } catch (err) {
      answers.push(failure(err))
      // SQLite rolled the whole transaction back (a full disk, an I/O error): nothing of the group is stored.
      if (!db.inTransaction) break
    }
  }
  if (!db.inTransaction) answers = batches.map(() => answers[answers.length - 1])
  else {
    try {
      commit.run()
      commits++
    } catch (err) {
      if (db.inTransaction) rollback.run()
      answers = batches.map(() => failure(err))
    }
  }
  for (const a of answers) parentPort.postMessage({ ...a, commits })
  return left
}
parentPort.on('message', (m) => {
  for (let next = m; next !== undefined; ) {
    if (next === 'close') {
      try { db.close() } finally { process.exit(0) }
    }
    if (next.kind === 'decisions') {
      next = writeDecisionGroup(next)
      continue
    }
    try {
      const ids = append.immediate(next)
      commits++
      parentPort.postMessage({ ids, commits })
    } catch (err) {
      parentPort.postMessage(failure(err))
    }
    next = undefined
  }
})
parentPort.postMessage('ready')
`

/** Decision batches written in one transaction at most (1000 records each at most: the ingest route's bound). */
const DECISION_GROUP_MAX = 8

/** What the thread needs to write `audit_events` rows. */
export interface AppendThreadOptions {
  path: string
  busyTimeoutMs: number
  /** `INSERT INTO audit_events (…) VALUES ` */
  insertPrefix: string
  /** `(?, ?, …)` for one row. */
  rowPlaceholders: string
  rowsPerInsert: number
  /** Selects `chain_seq, hash` of a chain's last event (one `?`: the chain id). */
  headSql: string
  /** Adds the batch's audit time mark: executor.ts AUDIT_TIME_MARK_SQL. */
  timeMarkSql: string
  /** The decision log's INSERT: `INSERT INTO decisions (…) VALUES `, one row's `(?, …)`, and what ends it (`ON CONFLICT … DO NOTHING`). */
  decisions: { insertPrefix: string; rowPlaceholders: string; insertSuffix: string; rowsPerInsert: number }
}

/** An audit batch as the thread takes it: `rows` rows of `width` parameters each, flattened. */
export interface AuditBatch {
  kind: 'audit'
  chainId: string
  rows: number
  width: number
  params: unknown[]
  /** The batch's time mark (executor.ts auditTimeMark). */
  mark: AuditTimeMark
  follows?: ChainHead
}

/** A decision-log batch as the thread takes it: `rows` rows of `width` parameters each, flattened. */
export interface DecisionBatch {
  kind: 'decisions'
  rows: number
  width: number
  params: unknown[]
}

/** The thread's answer to a batch: the audit rows' ids, how many decisions were stored, or what failed. */
interface Answer {
  ids?: number[]
  stored?: number
  error?: { message: string; code?: string }
  /** Transactions the thread has committed so far. */
  commits?: number
}

interface InFlight {
  resolve: (answer: Answer) => void
  reject: (err: Error) => void
}

/** Raised where the thread reported a failure; `code` is SQLite's (or AEGIS_CHAIN_MOVED) so storeError can classify it. */
class AppendThreadError extends Error {
  constructor(
    message: string,
    readonly code: string | undefined,
  ) {
    super(message)
  }
}

export class AppendThread {
  private readonly inFlight: InFlight[] = []
  /** Owner writes waiting for the batches in flight. */
  private readonly exclusiveWaiting: Array<() => void> = []
  /** Batches handed over while owner writes wait; sent after those ran. */
  private readonly heldBack: Array<() => void> = []
  private failure: Error | null = null
  private committed = 0

  private constructor(
    private readonly worker: Worker,
    private readonly exited: Promise<void>,
  ) {
    worker.on('message', (m: Answer) => {
      if (m.commits !== undefined) this.committed = m.commits
      const done = this.inFlight.shift()
      if (!done) return
      if (m.error === undefined) done.resolve(m)
      else if (m.error?.code === CHAIN_MOVED) done.reject(new Conflict(m.error.message))
      else done.reject(new AppendThreadError(m.error?.message ?? 'append thread failed', m.error?.code))
      if (this.inFlight.length === 0) this.drained()
    })
    const fail = (err: Error): void => {
      this.failure ??= err
      for (const f of this.inFlight.splice(0)) f.reject(this.failure)
      this.drained()
    }
    worker.on('error', fail)
    void exited.then(() => fail(new Error('append thread exited')))
  }

  /** Starts the thread; resolves once its connection is open. */
  static async start(opts: AppendThreadOptions): Promise<AppendThread> {
    const driver = createRequire(import.meta.url).resolve('better-sqlite3')
    const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { ...opts, driver, decisionGroupMax: DECISION_GROUP_MAX } })
    const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()))
    await new Promise<void>((resolve, reject) => {
      worker.once('message', () => resolve())
      worker.once('error', reject)
      void exited.then(() => reject(new Error('append thread exited before it was ready')))
    })
    worker.unref()
    return new AppendThread(worker, exited)
  }

  /** False once the thread failed or exited: the owner writes in place again. */
  get alive(): boolean {
    return this.failure === null
  }

  /** Write transactions the thread has committed (a group of decision batches is one). */
  get commits(): number {
    return this.committed
  }

  /** Batches in flight. */
  get pending(): number {
    return this.inFlight.length
  }

  /** Writes an audit batch; resolves the ids its rows got. */
  async append(batch: AuditBatch): Promise<number[]> {
    return (await this.send(batch)).ids!
  }

  /** Writes a decision-log batch; resolves how many of its records were stored (a record already stored is skipped). */
  async appendDecisions(batch: DecisionBatch): Promise<number> {
    return (await this.send(batch)).stored!
  }

  private send(batch: AuditBatch | DecisionBatch): Promise<Answer> {
    return new Promise<Answer>((resolve, reject) => {
      const send = (): void => {
        if (this.failure) {
          reject(this.failure)
          return
        }
        this.inFlight.push({ resolve, reject })
        this.worker.postMessage(batch)
      }
      if (this.exclusiveWaiting.length > 0) this.heldBack.push(send)
      else send()
    })
  }

  /**
   * Runs `fn` (a synchronous write on the owner's connection) when no batch
   * is in flight: at once if none is, else right after the last one comes
   * back, before any batch handed over meanwhile is sent.
   */
  exclusive<R>(fn: () => R): Promise<R> {
    if (this.inFlight.length === 0) return settle(fn)
    return new Promise<R>((resolve, reject) => {
      this.exclusiveWaiting.push(() => settle(fn).then(resolve, reject))
    })
  }

  private drained(): void {
    for (const run of this.exclusiveWaiting.splice(0)) run()
    for (const send of this.heldBack.splice(0)) send()
  }

  /** Waits for the batches in flight, then closes the thread's connection. */
  async close(): Promise<void> {
    await this.exclusive(() => undefined)
    this.worker.ref()
    this.worker.postMessage('close')
    await Promise.race([this.exited, new Promise((r) => setTimeout(r, 2000).unref())])
    if (this.worker.threadId !== -1) await this.worker.terminate()
  }
}
