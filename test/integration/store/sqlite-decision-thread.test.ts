/**
 * SQLite writes decision-log batches on the append thread (append-thread.ts),
 * not on the connection of the event loop: an upload of 500 decisions held
 * every other request of the process for about 5 ms. The owner connection's
 * own change count shows where the rows were written.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import BetterSqlite from 'better-sqlite3'
import type Database from 'better-sqlite3'
import { openSqliteStore } from '../../../src/store/sqlite/index.js'
import type { SqliteStore } from '../../../src/store/sqlite/store.js'
import type { DecisionRecord } from '../../../src/store/types.js'
import { record } from '../../contract/decision-log.js'

function records(count: number): DecisionRecord[] {
  return Array.from({ length: count }, (_, i) => record({ decision: i % 10 === 0 ? 'deny' : 'allow' }))
}

test('SQLite decision batches go to the append thread, in order with owner writes; a retried one stored once; with the thread gone, in place', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'aegis-decision-thread-'))
  const store = (await openSqliteStore(join(dir, 'aegis.db'))) as SqliteStore
  t.after(async () => {
    await store.close()
    rmSync(dir, { recursive: true, force: true })
  })
  assert.equal(store.appendOffThread, true)
  // Private to the store: read here only to see which connection wrote (total_changes counts this connection's own).
  const internals = store as unknown as { db: Database.Database; appendThread: { worker: { terminate(): Promise<number> } } }
  const ownerChanges = () => (internals.db.prepare('SELECT total_changes() AS n').get() as { n: number }).n
  const before = ownerChanges()

  const first = records(250)
  assert.equal(await store.decisions.append(first), 250)
  assert.equal(ownerChanges(), before, 'the owner connection wrote none of them')
  assert.equal(await store.decisions.append([...first.slice(200), ...records(10)]), 10, 'a retried upload: only the new records')
  assert.equal((await store.decisions.query({ limit: 1000 })).length, 260)

  // An owner write waits for the batch in flight and goes before a batch handed over after it.
  const order: string[] = []
  const inFlight = store.decisions.append(records(300)).then(() => order.push('batch in flight'))
  const ownerWrite = store.tenants.create({ id: 'acme', name: 'Acme', requireAttestation: false, createdAt: 1 }).then(() => order.push('owner write'))
  const after = store.decisions.append(records(5)).then(() => order.push('batch handed over after it'))
  await Promise.all([inFlight, ownerWrite, after])
  assert.deepEqual(order, ['batch in flight', 'owner write', 'batch handed over after it'])
  assert.equal((await store.decisions.query({ limit: 1000 })).length, 565)

  // As a crash would: later batches are written on the owner connection.
  await internals.appendThread.worker.terminate()
  await new Promise((r) => setTimeout(r, 50))
  assert.equal(store.appendOffThread, false)
  const changes = ownerChanges()
  assert.equal(await store.decisions.append(records(7)), 7)
  assert.equal(ownerChanges(), changes + 7)
  assert.equal((await store.decisions.query({ limit: 1000 })).length, 572)
})

test('decision batches queued on the append thread share one transaction, each undone alone when it fails, each answered after the commit', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'aegis-decision-group-'))
  const path = join(dir, 'aegis.db')
  const store = (await openSqliteStore(path)) as SqliteStore
  // Another process's writer: while it holds the write lock, the thread's first batch waits for it and the others queue behind.
  const other = new BetterSqlite(path)
  t.after(async () => {
    if (other.inTransaction) other.exec('ROLLBACK')
    other.close()
    await store.close()
    rmSync(dir, { recursive: true, force: true })
  })
  // Private to the store: the thread's count of committed transactions.
  const thread = () => (store as unknown as { appendThread: { commits: number } }).appendThread
  const stored = async () => (await store.decisions.query({ limit: 1000 })).length
  const first = records(100)
  assert.equal(await store.decisions.append(first), 100)
  const commitsBefore = thread().commits

  other.exec('BEGIN IMMEDIATE')
  const good = records(50)
  const retried = [...first.slice(90), ...records(5)]
  // A NOT NULL column left null in its 101st record: the batch fails in its second INSERT (100 rows each),
  // after the first stored 100 records, which must be undone with it.
  const bad = [...records(100), { ...record(), decision: null as unknown as DecisionRecord['decision'] }]
  const last = records(20)
  const outcomes = Promise.allSettled([good, retried, bad, last].map((batch) => store.decisions.append(batch)))
  await new Promise((r) => setTimeout(r, 300))
  assert.equal(thread().commits, commitsBefore, 'nothing is answered while the lock is held')
  other.exec('COMMIT')
  const [a, b, c, d] = await outcomes
  assert.deepEqual(a, { status: 'fulfilled', value: 50 })
  assert.deepEqual(b, { status: 'fulfilled', value: 5 }, 'a retried upload: only its new records')
  assert.equal(c?.status, 'rejected')
  assert.deepEqual(d, { status: 'fulfilled', value: 20 })
  assert.equal(thread().commits, commitsBefore + 1, 'the four batches went in one transaction')
  assert.equal(await stored(), 100 + 50 + 5 + 20)
  const ids = new Set((await store.decisions.query({ limit: 1000 })).map((r) => r.id))
  assert.equal(ids.has(bad[0]!.id), false, "the failed batch's first INSERT was undone with it")
  assert.equal(ids.has(last[19]!.id), true)
})
