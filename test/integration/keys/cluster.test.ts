import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createAuditWriter } from '../../../src/control-plane/audit/index.js'
import { createKeyManager } from '../../../src/control-plane/keys/index.js'
import { Metrics } from '../../../src/observability/metrics.js'
import { openPostgresStore } from '../../../src/store/index.js'
import { freshPostgresSchema, skipWithoutPostgres } from '../../helpers/services.js'
import { deferrer, logger, manualClock, testConfig } from '../../unit/keys/fixture.js'

test('two control planes on one PostgreSQL: exactly one creates and rotates keys, both sign with the same kid', {
  skip: await skipWithoutPostgres(),
}, async (t) => {
  const defer = deferrer(t)
  const schema = await freshPostgresSchema()
  defer(() => schema.drop())
  const config = testConfig({ databaseUrl: schema.url })
  const storeA = await openPostgresStore(schema.url, { logger })
  defer(() => storeA.close())
  const storeB = await openPostgresStore(schema.url, { logger })
  defer(() => storeB.close())
  const clock = manualClock()

  // Both start at once on an empty database: one creates the key, the other loads it.
  const [a, b] = await Promise.all([
    createKeyManager({ config, store: storeA, clock, logger, metrics: new Metrics() }),
    createKeyManager({ config, store: storeB, clock, logger, metrics: new Metrics() }),
  ])
  defer(() => a.stop())
  defer(() => b.stop())
  const auditA = await createAuditWriter({ store: storeA, keys: a, clock, logger, chainId: 'cp-a', checkpointIntervalMs: 60_000 })
  defer(() => auditA.close())
  const auditB = await createAuditWriter({ store: storeB, keys: b, clock, logger, chainId: 'cp-b', checkpointIntervalMs: 60_000 })
  defer(() => auditB.close())
  a.attachAudit(auditA)
  b.attachAudit(auditB)
  assert.equal((await storeA.keys.list()).length, 1)
  assert.equal(a.currentKid(), b.currentKid())
  const k1 = a.currentKid()

  // Rotation falls due on both at the same instant: exactly one publishes next.
  clock.advance((3600 - 600) * 1000)
  for (let i = 0; i < 50 && !(await storeA.keys.list()).some((k) => k.state === 'next'); i++) {
    await Promise.all([a.maintain(), b.maintain()])
  }
  await Promise.all([a.refresh(), b.refresh()])
  const rows = await storeA.keys.list()
  assert.equal(rows.length, 2, 'one next key, not two')
  const k2 = rows.find((k) => k.state === 'next')!.kid
  assert.equal(a.jwksEtag(), b.jwksEtag())

  // Both switch at the stored activation instant, without talking to each other.
  clock.advance(600 * 1000 - 1)
  assert.equal(a.signJwt({ typ: 'at+jwt' }, {}).kid, k1)
  assert.equal(b.signJwt({ typ: 'at+jwt' }, {}).kid, k1)
  clock.advance(1)
  assert.equal(a.signJwt({ typ: 'at+jwt' }, {}).kid, k2)
  assert.equal(b.signJwt({ typ: 'at+jwt' }, {}).kid, k2)
  await Promise.all([a.maintain(), b.maintain()])

  // An emergency rotation on one reaches the other at its next refresh.
  const r = await a.rotate({ emergency: true, actor: 'admin:test' })
  await b.refresh()
  assert.equal(b.signJwt({ typ: 'at+jwt' }, {}).kid, r.current)
  assert.equal(a.jwksBody(), b.jwksBody())

  await Promise.all([auditA.flush(), auditB.flush()])
  const events = [...(await storeA.audit.chain('cp-a', 0, 100)), ...(await storeA.audit.chain('cp-b', 0, 100))]
  const created = events
    .filter((e) => e.type === 'key.created')
    .map((e) => e.subject)
    .sort()
  assert.deepEqual(created, [k1, k2, r.current].sort(), 'each key created once, by one control plane')
  assert.equal(events.filter((e) => e.type === 'key.activated' && e.subject === k2).length, 1)
})
