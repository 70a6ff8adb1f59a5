/**
 * `npm run bench -- audit-append`: what storing one audit event costs on
 * SQLite (one per token issued), through the store's own append (its
 * INSERT, its indexes, its time mark), in batches of 50 as the writer's
 * group commit sends them at a few thousand tokens a second. Two shapes of
 * log: one agent (the issuance bench's), and 10 tenants × 100 agents
 * interleaved, where each index takes its rows at many places instead of at
 * its end. The baseline, measured in the same run and the same way: the
 * same rows in the same batches into a table of the same columns with only
 * its primary key, i.e. what the rows cost without the query indexes.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { openSqliteStore } from '../src/store/sqlite/index.js'
import type { NewAuditEvent } from '../src/store/types.js'

export interface AuditAppendFigure {
  shape: string
  /** CPU of this process (every thread) per event through the store. */
  storeUsPerEvent: number
  /** The same rows into a table with only its primary key. */
  bareUsPerEvent: number
}

const BATCH = 50
const HASH = 'x'.repeat(43)

function events(n: number, tenants: number, agents: number): NewAuditEvent[] {
  const t0 = Date.now()
  return Array.from({ length: n }, (_, i) => {
    const tenant = `t${i % tenants}`
    return {
      chainId: 'bench',
      chainSeq: i + 1,
      ts: t0 + Math.floor(i / 5),
      type: 'token.issued',
      tenant,
      actor: `agent:${tenant}/a${i % agents}`,
      subject: `jti-${i}`,
      data: { scope: 'payments:write', ttl: 300, kid: 'k1' },
      dataJson: '{"kid":"k1","scope":"payments:write","ttl":300}',
      prevHash: HASH,
      hash: HASH,
    }
  })
}

function cpuUs(): number {
  const u = process.cpuUsage()
  return u.user + u.system
}

async function throughStore(dir: string, evs: NewAuditEvent[]): Promise<number> {
  const store = await openSqliteStore(join(dir, 'store.db'))
  try {
    const c0 = cpuUs()
    for (let at = 0; at < evs.length; at += BATCH) await store.audit.append(evs.slice(at, at + BATCH))
    return (cpuUs() - c0) / evs.length
  } finally {
    await store.close()
  }
}

function bare(dir: string, evs: NewAuditEvent[]): number {
  const db = new Database(join(dir, 'bare.db'))
  try {
    db.pragma('journal_mode = WAL')
    db.pragma('synchronous = NORMAL')
    db.pragma('cache_size = -32768')
    db.exec(`CREATE TABLE audit_events (id INTEGER PRIMARY KEY AUTOINCREMENT, chain_id TEXT NOT NULL, chain_seq INTEGER NOT NULL,
      type TEXT NOT NULL, tenant TEXT, actor TEXT, subject TEXT, data TEXT NOT NULL, ts INTEGER NOT NULL, prev_hash TEXT NOT NULL,
      hash TEXT NOT NULL) STRICT`)
    const row = '(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)'
    const insert = db.prepare(
      `INSERT INTO audit_events (chain_id, chain_seq, type, tenant, actor, subject, data, ts, prev_hash, hash) VALUES ${Array(BATCH).fill(row).join(', ')}`,
    )
    const batch = db.transaction((part: NewAuditEvent[]) => {
      const args: unknown[] = []
      for (const e of part) args.push(e.chainId, e.chainSeq, e.type, e.tenant, e.actor, e.subject, e.dataJson, e.ts, e.prevHash, e.hash)
      insert.run(args)
    })
    const c0 = cpuUs()
    for (let at = 0; at < evs.length; at += BATCH) batch.immediate(evs.slice(at, at + BATCH))
    return (cpuUs() - c0) / evs.length
  } finally {
    db.close()
  }
}

/** Each shape, store then baseline, `n` events each (a multiple of 50). */
export async function benchAuditAppend(n = 200_000): Promise<AuditAppendFigure[]> {
  const out: AuditAppendFigure[] = []
  for (const [shape, tenants, agents] of [
    ['one agent', 1, 1],
    ['10 tenants × 100 agents, interleaved', 10, 100],
  ] as const) {
    const evs = events(n, tenants, agents)
    const dir = mkdtempSync(join(tmpdir(), 'aegis-bench-audit-'))
    try {
      const storeUsPerEvent = await throughStore(dir, evs)
      const bareUsPerEvent = bare(dir, evs)
      out.push({ shape, storeUsPerEvent, bareUsPerEvent })
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  }
  return out
}
