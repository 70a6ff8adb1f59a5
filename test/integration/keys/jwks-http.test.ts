import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createRemoteJWKSet, jwtVerify } from 'jose'
import { createAuditWriter } from '../../../src/control-plane/audit/index.js'
import { createKeyManager, keyRoutes } from '../../../src/control-plane/keys/index.js'
import { Metrics } from '../../../src/observability/metrics.js'
import { adminToken, CollectingFeed, deferrer, depsFor, listen, logger, manualClock, tempSqlite, testConfig } from '../../unit/keys/fixture.js'

async function setup(t: { after: (fn: () => Promise<void>) => void }) {
  const defer = deferrer(t)
  const { store, cleanup } = await tempSqlite()
  defer(cleanup)
  const config = testConfig()
  const clock = manualClock()
  const keys = await createKeyManager({ config, store, clock, logger, metrics: new Metrics() })
  defer(() => keys.stop())
  const audit = await createAuditWriter({ store, keys, clock, logger, chainId: 'cp-http', checkpointIntervalMs: 60_000 })
  defer(() => audit.close())
  keys.attachAudit(audit)
  const feed = new CollectingFeed()
  const deps = depsFor({ config, store, keys, audit, clock, feed })
  const { app, url } = await listen(config, [(a) => keyRoutes(a, deps)])
  defer(() => app.close())
  return { store, config, clock, keys, audit, feed, url }
}

test('the JWKS has a strong ETag, Cache-Control max-age, and answers 304 to If-None-Match', async (t) => {
  const { url, keys, clock, config } = await setup(t)
  const res = await fetch(`${url}/.well-known/jwks.json`)
  assert.equal(res.status, 200)
  assert.match(res.headers.get('content-type') ?? '', /^application\/jwk-set\+json/)
  assert.equal(res.headers.get('cache-control'), `public, max-age=${config.jwks.maxAgeSeconds}`)
  const etag = res.headers.get('etag')!
  assert.match(etag, /^"[A-Za-z0-9_-]{43}"$/, 'strong (no W/) quoted base64url SHA-256')
  const body = (await res.json()) as { keys: Array<Record<string, unknown>> }
  assert.deepEqual(
    body.keys.map((k) => [k.kty, k.crv, k.alg, k.use, k.kid]),
    [['OKP', 'Ed25519', 'EdDSA', 'sig', keys.currentKid()]],
  )
  assert.ok(!('d' in body.keys[0]!))

  const cached = await fetch(`${url}/.well-known/jwks.json`, { headers: { 'if-none-match': etag } })
  assert.equal(cached.status, 304)
  assert.equal(cached.headers.get('etag'), etag)
  assert.equal(cached.headers.get('cache-control'), `public, max-age=${config.jwks.maxAgeSeconds}`)
  assert.equal(await cached.text(), '')
  assert.equal((await fetch(`${url}/.well-known/jwks.json`, { headers: { 'if-none-match': `"other", W/${etag}` } })).status, 304)
  assert.equal((await fetch(`${url}/.well-known/jwks.json`, { headers: { 'if-none-match': '"other"' } })).status, 200)

  // Publishing a next key changes the body and the ETag: the old tag now gets the new set.
  clock.advance((3600 - 600) * 1000)
  await keys.maintain()
  const after = await fetch(`${url}/.well-known/jwks.json`, { headers: { 'if-none-match': etag } })
  assert.equal(after.status, 200)
  assert.notEqual(after.headers.get('etag'), etag)
  assert.equal(((await after.json()) as { keys: unknown[] }).keys.length, 2)
})

test('a token signed before a scheduled rotation verifies with jose over HTTP after it, until it expires', async (t) => {
  const { url, keys, clock, config } = await setup(t)
  const issuer = config.issuer
  const mint = (ttl: number): string => {
    const iat = Math.floor(clock.now() / 1000)
    return keys.signJwt({ typ: 'at+jwt' }, { iss: issuer, sub: 'bot', aud: 'aegis-gateway', iat, nbf: iat, exp: iat + ttl, jti: `j${iat}` }).jwt
  }
  const verify = (jwt: string) =>
    jwtVerify(jwt, createRemoteJWKSet(new URL(`${url}/.well-known/jwks.json`)), {
      issuer,
      audience: 'aegis-gateway',
      algorithms: ['EdDSA'],
      typ: 'at+jwt',
      currentDate: new Date(clock.now()),
      clockTolerance: 30,
    })
  const k1 = keys.currentKid()
  // Just before the next key is published, mint the longest-lived token.
  clock.advance((3600 - 600) * 1000 - 1000)
  const old = mint(600)
  assert.equal((await verify(old)).protectedHeader.kid, k1)

  clock.advance(1000)
  await keys.maintain()
  clock.advance(600 * 1000)
  const fresh = mint(600)
  const k2 = (await verify(fresh)).protectedHeader.kid
  assert.notEqual(k2, k1, 'the new key signs after the rotation')
  // Minted 601 s ago with a 600 s lifetime: still inside the 30 s skew, so it verifies after the rotation.
  assert.equal((await verify(old)).protectedHeader.kid, k1, 'still verifies after the rotation, until exp')
  clock.advance(30_000)
  await assert.rejects(verify(old), (err: Error & { code?: string }) => err.code === 'ERR_JWT_EXPIRED')
  // Once the previous key retires it leaves the JWKS.
  clock.advance(600 * 1000)
  await assert.rejects(verify(old), (err: Error & { code?: string }) => err.code === 'ERR_JWKS_NO_MATCHING_KEY')
})

test('the keys admin API: global admins list and rotate; tenant admins, other roles and anonymous callers are refused', async (t) => {
  const { url, store, keys, feed, audit } = await setup(t)
  const global = await adminToken(store, null)
  const tenantAdmin = await adminToken(store, 'acme')
  const gateway = await adminToken(store, null, 'gateway')
  const get = (token?: string) => fetch(`${url}/admin/v1/keys`, { headers: token ? { authorization: `Bearer ${token}` } : {} })

  assert.equal((await get()).status, 401)
  const t403 = await get(tenantAdmin)
  assert.equal(t403.status, 403)
  assert.equal(((await t403.json()) as { error: string }).error, 'forbidden')
  assert.equal((await get(gateway)).status, 403)
  const ok = await get(global)
  assert.equal(ok.status, 200)
  const text = await ok.text()
  assert.ok(!text.includes('encrypted') && !text.includes('"d"'), 'no private material')
  const listed = JSON.parse(text) as { keys: Array<{ kid: string; state: string; activates_at: number }>; current: string }
  assert.deepEqual(
    listed.keys.map((k) => [k.kid, k.state]),
    [[keys.currentKid(), 'current']],
  )

  const rotate = (query: string, token = global) =>
    fetch(`${url}/admin/v1/keys/rotate${query}`, { method: 'POST', headers: { authorization: `Bearer ${token}` } })
  assert.equal((await rotate('', tenantAdmin)).status, 403)
  const bad = await rotate('?emergency=maybe')
  assert.equal(bad.status, 400)
  assert.equal(((await bad.json()) as { error: string }).error, 'invalid_request')
  assert.equal((await store.keys.list()).length, 1, 'a refused request changes nothing')

  const r1 = await rotate('')
  assert.equal(r1.status, 200)
  const b1 = (await r1.json()) as { current: string; next: string; revoked: null }
  assert.equal(b1.current, listed.current)
  assert.equal(b1.revoked, null)
  assert.ok(b1.next)

  const old = keys.currentKid()
  const r2 = await rotate('?emergency=true')
  assert.equal(r2.status, 200)
  const b2 = (await r2.json()) as { current: string; revoked: string }
  assert.equal(b2.revoked, old)
  assert.equal(keys.currentKid(), b2.current)
  const jwks = (await (await fetch(`${url}/.well-known/jwks.json`)).json()) as { keys: Array<{ kid: string }> }
  assert.ok(!jwks.keys.some((k) => k.kid === old))
  const revs = await store.revocations.listActive(Date.now())
  assert.deepEqual(
    revs.map((r) => [r.type, r.value]),
    [['kid', old]],
  )
  assert.deepEqual(
    feed.events.map((e) => e.kind === 'revocation' && e.revocation.value),
    [old],
  )
  await audit.flush()
  const types = (await store.audit.query({ limit: 100 })).map((e) => `${e.type}:${e.subject}`)
  for (const want of [`key.revoked:${old}`, `key.rotated:${b2.current}`, `key.rotated:${b1.next}`, `admin.revocation_created:kid:${old}`])
    assert.ok(types.includes(want), `${want} in ${types.join(', ')}`)
})
