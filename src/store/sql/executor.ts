/**
 * The seam between the one SQL layer (repositories.ts) and the two databases:
 * an executor runs statements written once, with `?` placeholders, on SQLite
 * or PostgreSQL, and a dialect names the few places where the SQL differs.
 *
 * A transaction is a generator of statements, not an async function. The
 * executor answers each statement it yields: better-sqlite3 synchronously,
 * inside one `db.transaction()` (no other request can run a statement on the
 * shared connection before COMMIT, since nothing awaits), pg by awaiting each
 * query on the transaction's client. So the same repository code keeps
 * SQLite's transactions synchronous and PostgreSQL's asynchronous.
 */
import { Conflict } from '../../errors.js'
import type { DecisionRecord, NewAuditEvent } from '../types.js'
import type { Row } from './rows.js'

/** One statement a transaction hands its executor, which answers with the mapped result. */
export type Statement =
  | { readonly kind: 'one'; readonly text: string; readonly args: readonly unknown[]; readonly map: (r: Row) => unknown }
  | { readonly kind: 'all'; readonly text: string; readonly args: readonly unknown[]; readonly map: (r: Row) => unknown }
  | { readonly kind: 'run'; readonly text: string; readonly args: readonly unknown[] }

/** Work inside a transaction: yields statements, returns `T`. Compose with `yield*`. */
export type Step<T> = Generator<Statement, T, unknown>

/** The first row mapped by `map`, or null when there is none. */
export function* one<R>(text: string, args: readonly unknown[], map: (r: Row) => R): Step<R | null> {
  return (yield { kind: 'one', text, args, map }) as R | null
}

/** Every row, each mapped by `map`. */
export function* all<R>(text: string, args: readonly unknown[], map: (r: Row) => R): Step<R[]> {
  return (yield { kind: 'all', text, args, map }) as R[]
}

/** Runs a statement; returns how many rows it changed. */
export function* run(text: string, args: readonly unknown[]): Step<number> {
  return (yield { kind: 'run', text, args }) as number
}

/**
 * What differs between the databases, by name. Everything else in
 * repositories.ts is the same text on both.
 */
export interface Dialect {
  /**
   * Appended to a SELECT whose row the transaction then updates. PostgreSQL:
   * ` FOR UPDATE`; SQLite: nothing (BEGIN IMMEDIATE already holds the
   * database's one write lock).
   */
  readonly forUpdate: string
  /**
   * Serializes transactions that name `key` until the current one ends, so
   * ids assigned inside follow commit order. PostgreSQL: a transaction-scoped
   * advisory lock; SQLite: no statement (writers are already serialized).
   */
  serialize(key: string): Step<void>
  /** A statement whose column `seq` is the highest revocation seq ever assigned (0 before the first). */
  readonly lastRevocationSeq: string
  /** A statement that takes the next revocation seq and returns it as column `seq`. */
  readonly nextRevocationSeq: string
  /**
   * Writes a batch of audit events in one transaction, the hot path: each
   * database has its own fastest form (SQLite: multi-row INSERTs; PostgreSQL:
   * one INSERT from unnest). Resolves the ids the rows got, in input order;
   * ids follow commit order. With `follows`, the chain's stored head is
   * checked inside the same transaction first (AuditAppendOptions).
   */
  appendAudit(events: readonly NewAuditEvent[], follows?: ChainHead): Promise<number[]>
  /** AuditRepo.appendDepth. */
  readonly auditAppendDepth: () => number
  /**
   * Writes a decision-log batch off the event loop where the database has a
   * way to (SQLite's append thread), else through `inPlace`; resolves how
   * many records were stored. Absent: always `inPlace`.
   */
  readonly appendDecisions?: (records: readonly DecisionRecord[], inPlace: () => Promise<number>) => Promise<number>
  /** How a decision-log query names a kind other than allow (DecisionKindStyle). */
  readonly decisionKinds: DecisionKindStyle
}

/**
 * How a query names one decision kind other than allow, so that an index
 * holding every kind but allow (`WHERE decision <> 'allow'`, migration 12)
 * can serve it:
 * - `term` (SQLite): `decision = ? AND decision <> 'allow'`; SQLite uses a
 *   partial index only when the query holds its WHERE term as written.
 * - `literal` (PostgreSQL): `decision = 'deny'`, the kind in the text (only
 *   a kind of `[a-z_]`, else a parameter). The planner proves that it
 *   implies the index's WHERE, in a prepared statement's generic plan too,
 *   where a parameter would prove nothing. The extra term would count the
 *   kind's selectivity twice, and with that estimate PostgreSQL chose to
 *   sort all of an agent's denials instead of reading the newest 100 in
 *   order.
 */
export type DecisionKindStyle = 'term' | 'literal'

/** A chain's last chain_seq and hash. */
export interface ChainHead {
  seq: number
  hash: string
}

/** The stored head of a chain, for the `follows` check of appendAudit. */
export const AUDIT_HEAD_SQL = 'SELECT chain_seq, hash FROM audit_events WHERE chain_id = ? ORDER BY chain_seq DESC LIMIT 1'

/**
 * Adds an audit time mark (migration 15) for a batch when its newest ts is
 * past every mark; arguments: the batch's first id, then its
 * {@link AuditTimeMark}'s `top` and `newest`. Runs in the append's
 * transaction, after its INSERT, where appends are serialized (SQLite's one
 * writer; PostgreSQL's audit.append lock), so marks keep max_ts
 * non-decreasing in id order.
 */
export const AUDIT_TIME_MARK_SQL =
  'INSERT INTO audit_time_marks (first_id, max_ts) SELECT ?, ? WHERE NOT EXISTS (SELECT 1 FROM audit_time_marks WHERE max_ts >= ?)'

/** A batch's newest ts, and the max_ts of the mark it may add: that ts rounded up to the end of its second, as migration 15 rounds. */
export interface AuditTimeMark {
  newest: number
  top: number
}

/** The time mark of a batch of audit events. */
export function auditTimeMark(events: readonly { ts: number }[]): AuditTimeMark {
  let newest = Number.NEGATIVE_INFINITY
  for (const e of events) if (e.ts > newest) newest = e.ts
  return { newest, top: Math.trunc(newest / 1000) * 1000 + 999 }
}

/** Refuses a batch whose chain head moved (`stored` is the head row, or undefined for an empty chain). */
export function checkFollows(chainId: string, follows: ChainHead, stored: Row | undefined | null): void {
  const seq = stored ? Number(stored.chain_seq) : 0
  if (seq !== follows.seq || (stored && String(stored.hash) !== follows.hash)) {
    throw new Conflict(`audit chain ${chainId} is at ${seq}, not at ${follows.seq} where this batch follows`)
  }
}

/**
 * What a repository needs from a database. `one`, `all` and `run` each run
 * a statement on its own (autocommit); `tx` runs a generator of statements
 * in one transaction and commits when it returns, rolls back when it throws.
 * Driver errors reject as they are: repositories.ts turns them into ours.
 */
export interface Sql {
  one<R>(text: string, args: readonly unknown[], map: (r: Row) => R): Promise<R | null>
  all<R>(text: string, args: readonly unknown[], map: (r: Row) => R): Promise<R[]>
  run(text: string, args: readonly unknown[]): Promise<number>
  tx<T>(work: () => Step<T>): Promise<T>
  readonly dialect: Dialect
}

/** `?` placeholders → PostgreSQL's `$1`, `$2`, … (no statement here has a `?` inside a literal). */
export function numbered(text: string): string {
  let i = 0
  return text.replace(/\?/g, () => `$${++i}`)
}

/** `INSERT INTO table (columns) VALUES (?, …)` for a row mapping of rows.ts. */
export function insertSql(t: { table: string; columns: readonly string[] }): string {
  return `INSERT INTO ${t.table} (${t.columns.join(', ')}) VALUES (${t.columns.map(() => '?').join(', ')})`
}
