import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createKeyManager, type KeyChange } from '../../../src/control-plane/keys/index.js'
import { Metrics } from '../../../src/observability/metrics.js'
import { openPostgresStore, openSqliteStore } from '../../../src/store/index.js'
import { openClusterSignal } from '../../../src/store/signal.js'
import { freshPostgresSchema, skipWithoutPostgres } from '../../helpers/services.js'
import { deferrer, logger, manualClock, tempSqlite, testConfig } from './fixture.js'

async function eventually(fn: () => Promise<boolean>, ms = 5_000): Promise<void> {
  const end = Date.now() + ms
  while (!(await fn())) {
    if (Date.now() > end) throw new Error(`not within ${ms} ms`)
    await new Promise((r) => setTimeout(r, 5))
  }
}

test("SQLite: another control plane's emergency rotation stops this one signing with the old key at once, without a refresh", async (t) => {
  const defer = deferrer(t)
  const { store, path, cleanup } = await tempSqlite()
  defer(cleanup)
  const config = testConfig()
  const clock = manualClock()
  const signalA = await openClusterSignal(config, logger)
  const signalB = await openClusterSignal(config, logger)
  defer(() => signalA.close())
  defer(() => signalB.close())
  const a = await createKeyManager({ config, store, clock, logger, metrics: new Metrics(), signal: signalA })
  defer(() => a.stop())
  const store2 = await openSqliteStore(path)
  defer(() => store2.close())
  const b = await createKeyManager({ config, store: store2, clock, logger, metrics: new Metrics(), signal: signalB })
  defer(() => b.stop())
  const heard: KeyChange[] = []
  b.onChange((c) => {
    heard.push(c)
  })
  const told: KeyChange[] = []
  a.onChange((c) => {
    told.push(c)
  })

  const r = await a.rotate({ emergency: true, actor: 'admin:test' })
  assert.deepEqual(
    told.map((c) => c.revoked),
    [[r.revoked]],
    'the rotating control plane told its feed before answering',
  )
  assert.equal(told[0]!.current, r.current)
  // No b.refresh(): the signal alone switches it, and a signature asked for now waits for the new key.
  assert.equal((await b.signJwtAsync({ typ: 'at+jwt' }, {})).kid, r.current)
  assert.equal(b.signJwt({ typ: 'at+jwt' }, {}).kid, r.current)
  assert.ok(!JSON.parse(b.jwksBody()).keys.some((k: { kid: string }) => k.kid === r.revoked), 'the revoked key left the JWKS')
  await eventually(async () => heard.length === 1)
  assert.deepEqual(heard[0]!.revoked, [r.revoked])
  assert.ok(heard[0]!.kids.includes(r.current))
})

test('PostgreSQL: LISTEN/NOTIFY carries an emergency rotation and a new next key to the other control plane', {
  skip: await skipWithoutPostgres(),
}, async (t) => {
  const defer = deferrer(t)
  const schema = await freshPostgresSchema()
  defer(() => schema.drop())
  const config = testConfig({ databaseUrl: schema.url })
  const clock = manualClock()
  const storeA = await openPostgresStore(schema.url, { logger })
  defer(() => storeA.close())
  const storeB = await openPostgresStore(schema.url, { logger })
  defer(() => storeB.close())
  const signalA = await openClusterSignal(config, logger)
  const signalB = await openClusterSignal(config, logger)
  defer(() => signalA.close())
  defer(() => signalB.close())
  assert.ok(signalA.healthy && signalB.healthy)
  const a = await createKeyManager({ config, store: storeA, clock, logger, metrics: new Metrics(), signal: signalA })
  defer(() => a.stop())
  const b = await createKeyManager({ config, store: storeB, clock, logger, metrics: new Metrics(), signal: signalB })
  defer(() => b.stop())

  const r = await a.rotate({ emergency: true, actor: 'admin:test' })
  const answered = performance.now()
  // keys.checkIntervalSeconds is 30 here: only the notification can make it this soon.
  await eventually(async () => (await b.signJwtAsync({ typ: 'at+jwt' }, {})).kid === r.current)
  console.log(`# other control plane signs with the new key ${(performance.now() - answered).toFixed(1)} ms after the rotation`)

  const m = await b.rotate({ emergency: false, actor: 'admin:test' })
  await eventually(async () => a.jwks().keys.some((k) => k.kid === m.next))
  assert.equal(a.currentKid(), r.current, 'a next key does not sign before its time')
})
