import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { createAuditWriter, GENESIS_HASH, verifyAuditStore } from '../../../src/control-plane/audit/index.js'
import { createKeyManager } from '../../../src/control-plane/keys/index.js'
import type { AegisError } from '../../../src/errors.js'
import { Metrics } from '../../../src/observability/metrics.js'
import { openSqliteStore } from '../../../src/store/sqlite/index.js'
import type { SqliteStore } from '../../../src/store/sqlite/store.js'
import type { NewAuditEvent, Store } from '../../../src/store/types.js'
import { deferrer, logger, manualClock, testConfig } from '../../unit/keys/fixture.js'

async function fileStore(t: Parameters<typeof deferrer>[0]): Promise<{ store: Store; path: string; defer: ReturnType<typeof deferrer> }> {
  const defer = deferrer(t)
  const dir = mkdtempSync(join(tmpdir(), 'aegis-audit-thread-'))
  defer(() => rmSync(dir, { recursive: true, force: true }))
  const path = join(dir, 'aegis.db')
  const store = await openSqliteStore(path)
  defer(() => store.close())
  return { store, path, defer }
}

/** Makes the database refuse audit events of type `boom`, from a connection of its own, as a full disk or a constraint would. */
function refuseBoom(path: string): void {
  const db = new Database(path)
  db.exec(`CREATE TRIGGER refuse BEFORE INSERT ON audit_events WHEN NEW.type = 'boom' BEGIN SELECT RAISE(ABORT, 'injected failure'); END`)
  db.close()
}

function row(seq: number, prevHash: string, type = 'token.issued'): NewAuditEvent {
  return {
    chainId: 'cp',
    chainSeq: seq,
    ts: 1_764_390_000_000 + seq,
    type,
    tenant: 'acme',
    actor: null,
    subject: `s${seq}`,
    data: {},
    prevHash,
    hash: `h${seq}`,
  }
}

test('SQLite audit batches are written on their own thread in the order handed over; one that follows a failed batch fails too', async (t) => {
  const { store, path } = await fileStore(t)
  assert.equal((store as SqliteStore).appendOffThread, true)
  assert.equal(store.audit.appendDepth, 2)
  await store.audit.append([row(1, GENESIS_HASH)], { follows: { seq: 0, hash: GENESIS_HASH } })
  refuseBoom(path)

  // Both handed over before either is answered: the second follows the head the first would leave.
  const first = store.audit.append([row(2, 'h1'), row(3, 'h2', 'boom')], { follows: { seq: 1, hash: 'h1' } })
  const second = store.audit.append([row(4, 'h3')], { follows: { seq: 3, hash: 'h3' } })
  const [a, b] = await Promise.allSettled([first, second])
  assert.equal(a.status, 'rejected')
  assert.equal(b.status, 'rejected')
  assert.match(String(((b as PromiseRejectedResult).reason as Error).message), /is at 1, not at 3/)
  // A head that is not the stored one is refused, and nothing is written.
  await assert.rejects(store.audit.append([row(2, 'x')], { follows: { seq: 1, hash: 'x' } }), /is at 1, not at 1/)
  assert.deepEqual(
    (await store.audit.chain('cp', 0, 10)).map((e) => e.chainSeq),
    [1],
  )
  // The right head is taken.
  assert.deepEqual(await store.audit.append([row(2, 'h1')], { follows: { seq: 1, hash: 'h1' } }), [2])
})

test('a write on the owner connection waits for the audit batches in flight and goes before the batches handed over meanwhile', async (t) => {
  const { store } = await fileStore(t)
  const order: string[] = []
  const inFlight = store.audit.append([row(1, GENESIS_HASH)]).then(() => order.push('batch in flight'))
  const ownerWrite = store.tenants.create({ id: 'acme', name: 'Acme', requireAttestation: false, createdAt: 1 }).then(() => order.push('owner write'))
  const heldBack = store.audit.append([row(2, 'h1')]).then(() => order.push('batch handed over after it'))
  await Promise.all([inFlight, ownerWrite, heldBack])
  assert.deepEqual(order, ['batch in flight', 'owner write', 'batch handed over after it'])
  assert.equal((await store.tenants.get('acme'))?.name, 'Acme')
})

test('the audit writer keeps two batches in flight on SQLite: under bursts with failing batches every answer is true and the chain stays whole', async (t) => {
  const { store, path, defer } = await fileStore(t)
  const clock = manualClock()
  const keys = await createKeyManager({ config: testConfig(), store, clock, logger, metrics: new Metrics() })
  defer(() => keys.stop())
  const audit = await createAuditWriter({ store, keys, clock, logger, chainId: 'cp-thread', checkpointIntervalMs: 60_000 })
  defer(() => audit.close())
  refuseBoom(path)

  // Seeded, so a failure can be replayed.
  let seed = 20_261_207
  const random = (): number => {
    seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31
    return seed / 2 ** 31
  }
  const outcomes: Array<Promise<{ n: number; ok: boolean; boom: boolean }>> = []
  let n = 0
  for (let burst = 0; burst < 40; burst++) {
    // Each burst spans several turns of the event loop, so batches are sent while earlier ones are in flight.
    for (let turn = 0; turn < 4; turn++) {
      for (let i = 0; i < 1 + Math.floor(random() * 20); i++) {
        const id = ++n
        const boom = random() < 0.004
        outcomes.push(
          audit.append({ type: boom ? 'boom' : 'token.issued', tenant: 'acme', data: { n: id } }).then(
            () => ({ n: id, ok: true, boom }),
            (err: AegisError) => {
              assert.equal(err.status, 503)
              return { n: id, ok: false, boom }
            },
          ),
        )
      }
      await new Promise((r) => setImmediate(r))
    }
  }
  const results = await Promise.all(outcomes)
  await audit.flush()
  const stored = await store.audit.chain('cp-thread', 0, 100_000)
  const storedNs = new Set(stored.map((e) => e.data.n as number))
  for (const r of results) {
    if (r.boom) assert.equal(r.ok, false, `event ${r.n} of type boom was acknowledged`)
    assert.equal(storedNs.has(r.n), r.ok, `event ${r.n} ${r.ok ? 'acknowledged but missing' : 'refused but stored'}`)
  }
  assert.deepEqual(
    stored.map((e) => e.chainSeq),
    stored.map((_, i) => i + 1),
  )
  const refusedWithoutBoom = results.filter((r) => !r.ok && !r.boom).length
  console.log(
    `# ${results.length} events, ${results.filter((r) => r.boom).length} refused by the database, ${refusedWithoutBoom} more refused as they ` +
      `shared or followed a failed batch, ${stored.length} stored`,
  )
  assert.ok(results.some((r) => r.boom))
  // After the last failure the writer is back on the stored head.
  await audit.append({ type: 'token.issued', tenant: 'acme', data: { n: 'last' } })
  const tail = await store.audit.chain('cp-thread', stored.length, 10)
  assert.deepEqual(
    tail.map((e) => [e.chainSeq, e.data.n]),
    [[stored.length + 1, 'last']],
  )
  await audit.close()
  const report = await verifyAuditStore(store)
  assert.equal(report.ok, true, JSON.stringify(report.firstBad))
})

test('when the append thread dies, batches in flight fail with 503 (written or not) and later ones are written in place on a whole chain', async (t) => {
  const { store, defer } = await fileStore(t)
  const clock = manualClock()
  const keys = await createKeyManager({ config: testConfig(), store, clock, logger, metrics: new Metrics() })
  defer(() => keys.stop())
  const audit = await createAuditWriter({ store, keys, clock, logger, chainId: 'cp-dies', checkpointIntervalMs: 60_000 })
  defer(() => audit.close())
  await audit.append({ type: 'token.issued', data: { n: 1 } })
  // The thread is private to the store; reached here only to stop it as a crash would.
  const thread = (store as unknown as { appendThread: { worker: { terminate(): Promise<number> } } }).appendThread
  const inFlight = audit.append({ type: 'token.issued', data: { n: 2 } })
  await new Promise((r) => setImmediate(r))
  await thread.worker.terminate()
  const second = await inFlight.then(
    () => 'written',
    (err: AegisError) => err.status,
  )
  assert.ok(second === 'written' || second === 503, String(second))
  assert.equal((store as SqliteStore).appendOffThread, false)
  assert.equal(store.audit.appendDepth, 1)
  await Promise.all([3, 4, 5].map((n) => audit.append({ type: 'token.issued', data: { n } })))
  const ns = (await store.audit.chain('cp-dies', 0, 10)).map((e) => e.data.n)
  // A 503 means the outcome is unknown, as with a crash after a commit: the thread may have committed the batch
  // and died before its answer came back (seen on Node 24). Either way the writer went on from the stored head.
  if (second === 'written') assert.deepEqual(ns, [1, 2, 3, 4, 5])
  else assert.ok([[1, 3, 4, 5].join(), [1, 2, 3, 4, 5].join()].includes(ns.join()), ns.join())
  await audit.close()
  assert.equal((await verifyAuditStore(store)).ok, true)
})
