import { test } from 'node:test'
import assert from 'node:assert/strict'
import Database from 'better-sqlite3'
import { createKeyManager } from '../../../src/control-plane/keys/index.js'
import { createAuditWriter, eventHash, GENESIS_HASH, verifyAuditStore } from '../../../src/control-plane/audit/index.js'
import { AegisError } from '../../../src/errors.js'
import { Metrics } from '../../../src/observability/metrics.js'
import type { Store } from '../../../src/store/types.js'
import { deferrer, logger, manualClock, tempSqlite, testConfig } from '../keys/fixture.js'

async function setup(t: { after: (fn: () => Promise<void>) => void }) {
  const defer = deferrer(t)
  const { store, path, cleanup } = await tempSqlite()
  defer(cleanup)
  const clock = manualClock()
  const keys = await createKeyManager({ config: testConfig(), store, clock, logger, metrics: new Metrics() })
  defer(() => keys.stop())
  return { store, path, clock, keys, defer }
}

/** Counts the store's audit transactions (the writer under test is untouched). */
function countingStore(store: Store): { store: Store; batches: number[] } {
  const batches: number[] = []
  const audit = {
    ...store.audit,
    append: (events: Parameters<Store['audit']['append']>[0]) => {
      batches.push(events.length)
      return store.audit.append(events)
    },
  }
  return { store: Object.assign(Object.create(Object.getPrototypeOf(store)), store, { audit }) as Store, batches }
}

test('events appended in one tick share one transaction and form a contiguous chain', async (t) => {
  const { store, clock, keys, defer } = await setup(t)
  const counted = countingStore(store)
  const audit = await createAuditWriter({ store: counted.store, keys, clock, logger, chainId: 'cp-a', checkpointIntervalMs: 60_000 })
  defer(() => audit.close())
  await Promise.all(
    Array.from({ length: 50 }, (_, i) => audit.append({ type: 'token.issued', tenant: 'acme', actor: `agent:acme/${i}`, subject: `jti-${i}`, data: { i } })),
  )
  assert.deepEqual(counted.batches, [50])
  const chain = await store.audit.chain('cp-a', 0, 100)
  assert.deepEqual(
    chain.map((e) => e.chainSeq),
    Array.from({ length: 50 }, (_, i) => i + 1),
  )
  assert.equal(chain[0]!.prevHash, GENESIS_HASH)
  for (let i = 1; i < chain.length; i++) assert.equal(chain[i]!.prevHash, chain[i - 1]!.hash)
  for (const e of chain) assert.equal(eventHash(e), e.hash)
  // Events appended while a batch is being written go into the next one.
  await audit.append({ type: 'admin.changed' })
  assert.deepEqual(counted.batches, [50, 1])
})

test('a failed batch rejects every caller in it with 503 and the chain continues from the committed head', async (t) => {
  const { store, path, clock, keys, defer } = await setup(t)
  const audit = await createAuditWriter({ store, keys, clock, logger, chainId: 'cp-b', checkpointIntervalMs: 60_000 })
  defer(() => audit.close())
  await audit.append({ type: 'token.issued', data: { n: 1 } })
  // A real database failure: a trigger refuses one event, aborting its whole transaction.
  const db = new Database(path)
  db.exec(`CREATE TRIGGER refuse BEFORE INSERT ON audit_events WHEN NEW.type = 'boom' BEGIN SELECT RAISE(ABORT, 'injected failure'); END`)
  db.close()
  const results = await Promise.allSettled([
    audit.append({ type: 'token.issued', data: { n: 2 } }),
    audit.append({ type: 'boom' }),
    audit.append({ type: 'token.issued', data: { n: 3 } }),
  ])
  for (const r of results) {
    assert.equal(r.status, 'rejected')
    const err = (r as PromiseRejectedResult).reason as AegisError
    assert.ok(err instanceof AegisError)
    assert.equal(err.code, 'temporarily_unavailable')
    assert.equal(err.status, 503)
  }
  assert.equal(audit.head().seq, 1)
  await audit.append({ type: 'token.issued', data: { n: 4 } })
  const chain = await store.audit.chain('cp-b', 0, 10)
  assert.deepEqual(
    chain.map((e) => [e.chainSeq, e.data.n]),
    [
      [1, 1],
      [2, 4],
    ],
  )
  await audit.close()
  const report = await verifyAuditStore(store)
  assert.equal(report.ok, true, JSON.stringify(report.firstBad))
})

test('a writer resumes its chain from the stored head, and checkpoints sign the head', async (t) => {
  const { store, clock, keys, defer } = await setup(t)
  const first = await createAuditWriter({ store, keys, clock, logger, chainId: 'cp-c', checkpointIntervalMs: 60_000 })
  await first.append({ type: 'a' })
  await first.append({ type: 'b' })
  await first.close()
  await assert.rejects(first.append({ type: 'late' }), (err: AegisError) => err.code === 'temporarily_unavailable')
  let cps = await store.audit.latestCheckpoints()
  assert.deepEqual(
    cps.map((c) => [c.chainId, c.chainSeq]),
    [['cp-c', 2]],
  )
  assert.equal(cps[0]!.kid, keys.currentKid())
  const [h] = cps[0]!.signature.split('.')
  assert.equal(JSON.parse(Buffer.from(h!, 'base64url').toString()).typ, 'aegis-checkpoint+jwt')

  const second = await createAuditWriter({ store, keys, clock, logger, chainId: 'cp-c', checkpointIntervalMs: 60_000 })
  defer(() => second.close())
  await second.append({ type: 'c' })
  const chain = await store.audit.chain('cp-c', 0, 10)
  assert.deepEqual(
    chain.map((e) => `${e.chainSeq}:${e.type}`),
    ['1:a', '2:b', '3:c'],
  )
  assert.equal(chain[2]!.prevHash, chain[1]!.hash)
  // No new checkpoint when the head has not moved; one when it has.
  await second.checkpoint()
  cps = await store.audit.latestCheckpoints()
  assert.equal(cps[0]!.chainSeq, 3)
  assert.equal(cps[0]!.headHash, chain[2]!.hash)
  assert.equal((await verifyAuditStore(store)).ok, true)
})

test('checkpoints are signed on the timer while the head moves', async (t) => {
  const { store, clock, keys, defer } = await setup(t)
  const audit = await createAuditWriter({ store, keys, clock, logger, chainId: 'cp-d', checkpointIntervalMs: 20 })
  defer(() => audit.close())
  await audit.append({ type: 'x' })
  for (let i = 0; i < 200 && (await store.audit.latestCheckpoints()).length === 0; i++) await new Promise((r) => setTimeout(r, 10))
  assert.deepEqual(
    (await store.audit.latestCheckpoints()).map((c) => c.chainSeq),
    [1],
  )
})

test('event data is stored as it reads back: undefined dropped, lone surrogates replaced', async (t) => {
  const { store, clock, keys, defer } = await setup(t)
  const audit = await createAuditWriter({ store, keys, clock, logger, chainId: 'cp-e', checkpointIntervalMs: 60_000 })
  defer(() => audit.close())
  await audit.append({ type: 'auth.failed', actor: 'client:\uD800x', data: { client_id: 'abc\uDC00', missing: undefined, when: new Date(0) } })
  const [e] = await store.audit.chain('cp-e', 0, 1)
  assert.deepEqual(e!.data, { client_id: 'abc\uFFFD', when: '1970-01-01T00:00:00.000Z' })
  assert.equal(e!.actor, 'client:\uFFFDx')
  await audit.close()
  assert.equal((await verifyAuditStore(store)).ok, true)
})

test('an event without a canonical form is refused alone; its batch neighbours are written', async (t) => {
  const { store, clock, keys, defer } = await setup(t)
  const audit = await createAuditWriter({ store, keys, clock, logger, chainId: 'cp-f', checkpointIntervalMs: 60_000 })
  defer(() => audit.close())
  const results = await Promise.allSettled([audit.append({ type: 'a' }), audit.append({ type: 'bad', data: { 'k\uD800': 1 } }), audit.append({ type: 'b' })])
  assert.deepEqual(
    results.map((r) => r.status),
    ['fulfilled', 'rejected', 'fulfilled'],
  )
  assert.deepEqual(
    (await store.audit.chain('cp-f', 0, 10)).map((e) => `${e.chainSeq}:${e.type}`),
    ['1:a', '2:b'],
  )
})
