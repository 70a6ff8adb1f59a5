import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes, verify, createPublicKey } from 'node:crypto'
import { createKeyManager, KekError } from '../../../src/control-plane/keys/index.js'
import { createAuditWriter } from '../../../src/control-plane/audit/index.js'
import { Metrics } from '../../../src/observability/metrics.js'
import { openSqliteStore } from '../../../src/store/index.js'
import { deferrer, logger, manualClock, tempSqlite, testConfig } from './fixture.js'

function decode(jwt: string): { header: Record<string, unknown>; payload: Record<string, unknown> } {
  const [h, p] = jwt.split('.')
  return { header: JSON.parse(Buffer.from(h!, 'base64url').toString()), payload: JSON.parse(Buffer.from(p!, 'base64url').toString()) }
}

function verifies(jwt: string, jwks: { keys: Record<string, unknown>[] }): boolean {
  const [h, p, s] = jwt.split('.')
  const kid = decode(jwt).header.kid
  const jwk = jwks.keys.find((k) => k.kid === kid)
  if (!jwk) return false
  return verify(null, Buffer.from(`${h}.${p}`), createPublicKey({ key: jwk as never, format: 'jwk' }), Buffer.from(s!, 'base64url'))
}

test('a key goes next → current → previous → retired on the stored schedule, with audit events', async (t) => {
  const defer = deferrer(t)
  const { store, cleanup } = await tempSqlite()
  defer(cleanup)
  const config = testConfig()
  const clock = manualClock()
  const keys = await createKeyManager({ config, store, clock, logger, metrics: new Metrics() })
  defer(() => keys.stop())
  const audit = await createAuditWriter({ store, keys, clock, logger, chainId: 'cp-1', checkpointIntervalMs: 60_000 })
  defer(() => audit.close())
  keys.attachAudit(audit)

  const k1 = keys.currentKid()
  assert.deepEqual(
    keys.list().map((k) => [k.kid, k.state]),
    [[k1, 'current']],
  )
  const t1 = keys.signJwt({ typ: 'at+jwt' }, { sub: 'a', exp: 1 })
  assert.deepEqual(decode(t1.jwt).header, { typ: 'at+jwt', alg: 'EdDSA', kid: k1 })
  assert.ok(verifies(t1.jwt, keys.jwks()))
  const etag1 = keys.jwksEtag()

  // Not yet due: nothing happens.
  clock.advance((3600 - 600 - 1) * 1000)
  await keys.maintain()
  assert.equal(keys.list().length, 1)

  // Due: `next` is published prePublishSeconds before it signs.
  clock.advance(1000)
  await keys.maintain()
  const next = keys.list().find((k) => k.state === 'next')
  assert.ok(next, 'a next key is published')
  const k2 = next.kid
  assert.equal(next.activatesAt, clock.now() + 600 * 1000)
  assert.deepEqual(
    keys
      .jwks()
      .keys.map((k) => k.kid)
      .sort(),
    [k1, k2].sort(),
  )
  assert.notEqual(keys.jwksEtag(), etag1)
  assert.equal(keys.signJwt({ typ: 'at+jwt' }, {}).kid, k1, 'next does not sign yet')

  // At activatesAt the next key signs, without waiting for the store.
  clock.advance(600 * 1000 - 1)
  assert.equal(keys.currentKid(), k1)
  clock.advance(1)
  assert.equal(keys.signJwt({ typ: 'at+jwt' }, {}).kid, k2)
  const states = Object.fromEntries(keys.list().map((k) => [k.kid, k.state]))
  assert.deepEqual(states, { [k1]: 'previous', [k2]: 'current' })
  assert.ok(verifies(t1.jwt, keys.jwks()), 'a token of the previous key still verifies')
  await keys.maintain()
  const stored = Object.fromEntries((await store.keys.list()).map((k) => [k.kid, k]))
  assert.equal(stored[k1]!.state, 'previous')
  assert.equal(stored[k2]!.state, 'current')
  // The previous key stays until its longest token has expired plus skew.
  assert.equal(stored[k1]!.retiresAt, clock.now() + (600 + 30) * 1000)

  clock.advance((600 + 30) * 1000 - 1)
  assert.ok(keys.jwks().keys.some((k) => k.kid === k1))
  clock.advance(1)
  assert.ok(!keys.jwks().keys.some((k) => k.kid === k1), 'retired keys leave the JWKS')
  assert.ok(!verifies(t1.jwt, keys.jwks()))
  await keys.maintain()
  assert.equal((await store.keys.list()).find((k) => k.kid === k1)!.state, 'retired')

  await audit.flush()
  const events = await store.audit.query({ limit: 100 })
  const seen = events.map((e) => `${e.type}:${e.subject === k1 ? 'k1' : e.subject === k2 ? 'k2' : e.subject}`)
  assert.deepEqual(seen, ['key.created:k1', 'key.activated:k1', 'key.created:k2', 'key.rotated:k2', 'key.activated:k2', 'key.retired:k1'])
  for (const e of events) assert.ok(!JSON.stringify(e).includes('encrypted') && !JSON.stringify(e.data).includes('"d"'))
})

test('emergency rotation signs with a fresh key at once and revokes the old kid', async (t) => {
  const defer = deferrer(t)
  const { store, cleanup } = await tempSqlite()
  defer(cleanup)
  const clock = manualClock()
  const keys = await createKeyManager({ config: testConfig(), store, clock, logger, metrics: new Metrics() })
  defer(() => keys.stop())
  const old = keys.currentKid()
  const r = await keys.rotate({ emergency: true, actor: 'admin:test' })
  assert.equal(r.revoked, old)
  assert.notEqual(r.current, old)
  assert.equal(keys.signJwt({ typ: 'at+jwt' }, {}).kid, r.current)
  assert.deepEqual(
    keys.jwks().keys.map((k) => k.kid),
    [r.current],
    'the revoked kid leaves the JWKS at once',
  )
  const row = (await store.keys.list()).find((k) => k.kid === old)!
  assert.equal(row.revoked, true)
  assert.equal(row.state, 'retired')
})

test('a manual rotation publishes next for prePublishSeconds before it signs, and a second one does not shorten that', async (t) => {
  const defer = deferrer(t)
  const { store, cleanup } = await tempSqlite()
  defer(cleanup)
  const clock = manualClock()
  const keys = await createKeyManager({ config: testConfig(), store, clock, logger, metrics: new Metrics() })
  defer(() => keys.stop())
  const k1 = keys.currentKid()
  const r = await keys.rotate({ emergency: false, actor: 'admin:test' })
  assert.equal(r.current, k1)
  assert.ok(r.next)
  const next = keys.list().find((k) => k.kid === r.next)!
  assert.equal(next.state, 'next')
  assert.equal(next.activatesAt, clock.now() + 600_000)
  const again = await keys.rotate({ emergency: false, actor: 'admin:test' })
  assert.equal(again.next, r.next)
  assert.equal(keys.list().find((k) => k.kid === r.next)!.activatesAt, clock.now() + 600_000)
  // Once it has been published long enough, rotate brings it forward to one check interval ahead.
  clock.advance(300_000)
  await keys.rotate({ emergency: false, actor: 'admin:test' })
  assert.equal(keys.list().find((k) => k.kid === r.next)!.activatesAt, clock.now() + 300_000)
})

test('no private material in list, JWKS or the store row', async (t) => {
  const defer = deferrer(t)
  const { store, cleanup } = await tempSqlite()
  defer(cleanup)
  const keys = await createKeyManager({ config: testConfig(), store, clock: manualClock(), logger, metrics: new Metrics() })
  defer(() => keys.stop())
  for (const k of keys.jwks().keys) {
    assert.deepEqual(Object.keys(k).sort(), ['alg', 'crv', 'kid', 'kty', 'use', 'x'])
    assert.equal(k.alg, 'EdDSA')
    assert.equal(k.use, 'sig')
  }
  for (const k of keys.list()) {
    assert.ok(!('encryptedPrivateKey' in k))
    assert.ok(!('d' in k.publicJwk))
  }
  const row = (await store.keys.list())[0]!
  assert.ok(!('d' in row.publicJwk))
  assert.ok(row.encryptedPrivateKey.length > 40)
})

test('a second control plane on the same store signs with the same key, and a wrong KEK refuses to start', async (t) => {
  const defer = deferrer(t)
  const { store, path, cleanup } = await tempSqlite()
  defer(cleanup)
  const config = testConfig()
  const clock = manualClock()
  const a = await createKeyManager({ config, store, clock, logger, metrics: new Metrics() })
  defer(() => a.stop())
  const store2 = await openSqliteStore(path)
  defer(() => store2.close())
  const b = await createKeyManager({ config, store: store2, clock, logger, metrics: new Metrics() })
  defer(() => b.stop())
  assert.equal(b.currentKid(), a.currentKid())
  assert.equal((await store.keys.list()).length, 1)
  assert.equal(a.jwksEtag(), b.jwksEtag())
  await assert.rejects(createKeyManager({ config, store: store2, clock, logger, metrics: new Metrics(), kek: randomBytes(32) }), (err: Error) => {
    assert.ok(err instanceof KekError)
    assert.match(err.message, /wrong KEK/)
    return true
  })
})

test("another control plane's emergency rotation reaches this one on refresh", async (t) => {
  const defer = deferrer(t)
  const { store, path, cleanup } = await tempSqlite()
  defer(cleanup)
  const config = testConfig()
  const clock = manualClock()
  const a = await createKeyManager({ config, store, clock, logger, metrics: new Metrics() })
  defer(() => a.stop())
  const store2 = await openSqliteStore(path)
  defer(() => store2.close())
  const b = await createKeyManager({ config, store: store2, clock, logger, metrics: new Metrics() })
  defer(() => b.stop())
  const r = await a.rotate({ emergency: true, actor: 'admin:test' })
  assert.equal(b.currentKid(), r.revoked)
  await b.refresh()
  assert.equal(b.signJwt({ typ: 'at+jwt' }, {}).kid, r.current)
  assert.equal(b.jwksBody(), a.jwksBody())
})
