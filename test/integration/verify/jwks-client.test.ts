import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { ManualClock } from '../../../src/lib/clock.js'
import { createVerifier, JwksClient, VerifyError, type JwksFetchEvent } from '../../../src/verify/index.js'
import { AUDIENCE, claimsAt, ed25519Key, rawSign, signToken, startJwksServer, waitFor } from '../../unit/verify/fixtures.js'

const ISSUER = 'https://aegis.test'

function reasonOf(err: unknown): string {
  assert.ok(err instanceof VerifyError, `expected VerifyError, got ${String(err)}`)
  assert.equal(err.code, 'invalid_token')
  return err.reason
}

describe('JWKS client', () => {
  test('a 304 revalidation keeps the keys (If-None-Match with the ETag)', async () => {
    const k1 = ed25519Key('k1')
    const server = await startJwksServer([k1])
    const client = new JwksClient({ jwksUrl: server.jwksUrl })
    try {
      await client.ready
      const key = client.getKey('k1')
      assert.ok(key)
      assert.equal(server.requests[0]?.ifNoneMatch, undefined)
      await client.refresh()
      assert.equal(server.jwksRequests(), 2)
      assert.match(server.requests[1]?.ifNoneMatch ?? '', /^".+"$/)
      assert.equal(client.stats.notModified, 1)
      assert.equal(client.stats.updates, 1)
      assert.equal(client.getKey('k1'), key)
      // A changed set is answered 200 and replaces the keys.
      const k2 = ed25519Key('k2')
      server.keys = [k2.jwk]
      await client.refresh()
      assert.equal(client.stats.updates, 2)
      assert.equal(client.getKey('k1'), undefined)
      assert.ok(client.getKey('k2'))
    } finally {
      client.close()
      await server.close()
    }
  })

  test('a flood of 1,000 random kids triggers one fetch per cooldown, shared by concurrent misses', async () => {
    const k1 = ed25519Key('k1')
    const server = await startJwksServer([k1])
    const clock = new ManualClock(Date.UTC(2026, 10, 29, 3, 0, 0))
    const verifier = createVerifier({ issuer: ISSUER, audience: AUDIENCE, jwksUrl: server.jwksUrl, clock })
    try {
      await verifier.jwks.ready
      const base = server.jwksRequests()
      const nowSec = Math.floor(clock.now() / 1000)
      const flood = () =>
        Array.from({ length: 1000 }, () =>
          rawSign({ alg: 'EdDSA', typ: 'at+jwt', kid: randomBytes(12).toString('base64url') }, claimsAt(ISSUER, nowSec), k1.privateKey),
        )

      // Within the cooldown of the initial load: no fetch at all.
      for (const err of await Promise.all(flood().map((t) => verifier.verifyAsync(t).catch((e: unknown) => e)))) assert.equal(reasonOf(err), 'unknown_kid')
      assert.equal(server.jwksRequests(), base)

      // Cooldown over: 1,000 concurrent misses share one fetch.
      clock.advance(10_000)
      for (const err of await Promise.all(flood().map((t) => verifier.verifyAsync(t).catch((e: unknown) => e)))) assert.equal(reasonOf(err), 'unknown_kid')
      assert.equal(server.jwksRequests(), base + 1)

      // Synchronous misses right after: still within the cooldown.
      for (const t of flood()) assert.equal(reasonOf(catchSync(() => verifier.verifySync(t))), 'unknown_kid')
      await verifier.jwks.refreshOnMiss()
      assert.equal(server.jwksRequests(), base + 1)

      // Next cooldown window: synchronous misses start one background fetch.
      clock.advance(10_000)
      for (const t of flood()) assert.equal(reasonOf(catchSync(() => verifier.verifySync(t))), 'unknown_kid')
      await verifier.jwks.refreshOnMiss()
      assert.equal(server.jwksRequests(), base + 2)

      const good = await signToken(k1, claimsAt(ISSUER, nowSec))
      assert.equal(verifier.verifySync(good).kid, 'k1')
    } finally {
      verifier.close()
      await server.close()
    }
  })

  test('refuses every token before the first load, then verifies once keys arrive', async () => {
    const k1 = ed25519Key('k1')
    const server = await startJwksServer([k1])
    server.mode = 'error'
    const clock = new ManualClock()
    const events: JwksFetchEvent[] = []
    const client = new JwksClient({ jwksUrl: server.jwksUrl, clock, onFetch: (e) => events.push(e) })
    const verifier = createVerifier({ issuer: ISSUER, audience: AUDIENCE, jwks: client, clock })
    let ready = false
    void client.ready.then(() => {
      ready = true
    })
    try {
      await waitFor(() => events.length >= 1)
      assert.equal(events[0]?.result, 'failed')
      assert.equal(events[0]?.trigger, 'initial')
      assert.equal(client.loaded, false)
      const token = await signToken(k1, claimsAt(ISSUER, Math.floor(clock.now() / 1000)))
      assert.equal(reasonOf(catchSync(() => verifier.verifySync(token))), 'keys_not_loaded')
      assert.equal(reasonOf(await verifier.verifyAsync(token).catch((e: unknown) => e)), 'keys_not_loaded')
      assert.equal(ready, false)

      server.mode = 'ok'
      clock.advance(10_000)
      assert.equal((await verifier.verifyAsync(token)).kid, 'k1')
      await client.ready
      assert.equal(ready, true)
      assert.equal(client.loaded, true)
    } finally {
      verifier.close()
      client.close()
      await server.close()
    }
  })

  test('a client closed before any key loaded rejects ready; a timed-out fetch is a failure', async () => {
    const server = await startJwksServer([ed25519Key('k1')])
    server.mode = 'slow'
    const events: JwksFetchEvent[] = []
    const client = new JwksClient({ jwksUrl: server.jwksUrl, timeoutMs: 200, onFetch: (e) => events.push(e) })
    try {
      await waitFor(() => events.length >= 1)
      assert.equal(events[0]?.result, 'failed')
      client.close()
      await assert.rejects(client.ready, /closed before keys were loaded/)
      const before = server.requests.length
      await client.refresh()
      await client.refreshOnMiss()
      assert.equal(server.requests.length, before, 'a closed client fetches nothing')
    } finally {
      client.close()
      await server.close()
    }
  })

  test('keeps verifying with the last good keys while the server errors, answers garbage or is gone', async () => {
    const k1 = ed25519Key('k1')
    const server = await startJwksServer([k1])
    const events: JwksFetchEvent[] = []
    const client = new JwksClient({ jwksUrl: server.jwksUrl, onFetch: (e) => events.push(e), timeoutMs: 1000 })
    const verifier = createVerifier({ issuer: ISSUER, audience: AUDIENCE, jwks: client, cacheSize: 0 })
    const fresh = () => signToken(k1, claimsAt(ISSUER, Math.floor(Date.now() / 1000)))
    try {
      await client.ready
      assert.ok(verifier.verifySync(await fresh()))
      for (const mode of ['error', 'garbage', 'not-a-set'] as const) {
        server.mode = mode
        const failures = client.stats.failures
        await client.refresh()
        assert.equal(client.stats.failures, failures + 1, mode)
        assert.equal(events.at(-1)?.result, 'failed')
        assert.equal(verifier.verifySync(await fresh()).kid, 'k1', mode)
      }
      await server.close()
      await client.refresh()
      assert.equal(events.at(-1)?.result, 'failed')
      assert.equal(verifier.verifySync(await fresh()).kid, 'k1')
      assert.equal(client.stats.keys, 1)
    } finally {
      verifier.close()
      client.close()
      await server.close()
    }
  })

  test('key rotation: a new kid causes one refetch and then verifies', async () => {
    const k1 = ed25519Key('k1')
    const server = await startJwksServer([k1])
    const clock = new ManualClock()
    const verifier = createVerifier({ issuer: ISSUER, audience: AUDIENCE, jwksUrl: server.jwksUrl, clock })
    const nowSec = () => Math.floor(clock.now() / 1000)
    try {
      await verifier.jwks.ready
      const base = server.jwksRequests()
      const k2 = ed25519Key('k2')
      server.keys = [k1.jwk, k2.jwk]
      clock.advance(10_000)
      assert.equal((await verifier.verifyAsync(await signToken(k2, claimsAt(ISSUER, nowSec())))).kid, 'k2')
      assert.equal(server.jwksRequests(), base + 1)
      assert.ok(verifier.verifySync(await signToken(k1, claimsAt(ISSUER, nowSec()))))

      // The synchronous path: refused at first, verified once the background refetch landed.
      const k3 = ed25519Key('k3')
      server.keys = [k2.jwk, k3.jwk]
      clock.advance(10_000)
      const t3 = await signToken(k3, claimsAt(ISSUER, nowSec()))
      assert.equal(reasonOf(catchSync(() => verifier.verifySync(t3))), 'unknown_kid')
      await verifier.jwks.refreshOnMiss()
      assert.equal(verifier.verifySync(t3).kid, 'k3')
      assert.equal(server.jwksRequests(), base + 2)
      // k1 was retired by the rotation.
      assert.equal(
        reasonOf(catchSync(() => verifier.verifySync(rawSign({ alg: 'EdDSA', typ: 'at+jwt', kid: 'k1' }, claimsAt(ISSUER, nowSec()), k1.privateKey)))),
        'unknown_kid',
      )
    } finally {
      verifier.close()
      await server.close()
    }
  })

  test('Cache-Control max-age drives a background refresh before expiry, revalidated with the ETag', async () => {
    const server = await startJwksServer([ed25519Key('k1')])
    server.maxAge = 1
    const events: JwksFetchEvent[] = []
    const client = new JwksClient({ jwksUrl: server.jwksUrl, minRefreshMs: 100, onFetch: (e) => events.push(e) })
    try {
      await client.ready
      await waitFor(() => events.some((e) => e.trigger === 'scheduled'))
      const scheduled = events.find((e) => e.trigger === 'scheduled')
      assert.equal(scheduled?.result, 'not_modified')
      assert.ok(server.requests[1]?.ifNoneMatch)
    } finally {
      client.close()
      await server.close()
    }
  })

  test('jwks_uri is discovered from RFC 8414 metadata of the issuer', async () => {
    const k1 = ed25519Key('k1')
    const server = await startJwksServer([k1])
    const verifier = createVerifier({ issuer: server.url, audience: AUDIENCE })
    try {
      await verifier.jwks.ready
      assert.equal(server.requests[0]?.path, '/.well-known/oauth-authorization-server')
      assert.equal(verifier.jwks.stats.discoveryFetches, 1)
      const token = await signToken(k1, claimsAt(server.url, Math.floor(Date.now() / 1000)))
      assert.equal(verifier.verifySync(token).claims.iss, server.url)
    } finally {
      verifier.close()
      await server.close()
    }
  })

  test('metadata naming another issuer is not used', async () => {
    const server = await startJwksServer([ed25519Key('k1')])
    server.metadataIssuer = 'https://evil.test'
    const events: JwksFetchEvent[] = []
    const client = new JwksClient({ issuer: server.url, onFetch: (e) => events.push(e) })
    try {
      await waitFor(() => events.length >= 1)
      assert.equal(events[0]?.result, 'failed')
      assert.equal(events[0]?.error, 'metadata issuer mismatch')
      assert.equal(server.jwksRequests(), 0)
      assert.equal(client.loaded, false)
    } finally {
      client.close()
      await server.close()
    }
  })

  test('only signing keys of an allowed type are imported; duplicated kids are dropped', async () => {
    const good = ed25519Key('good')
    const base = (kid: string) => ({ ...ed25519Key(kid).jwk })
    const privateJwk = { ...ed25519Key('x').privateKey.export({ format: 'jwk' }), kid: 'private', alg: 'EdDSA' }
    const server = await startJwksServer([good])
    server.keys = [
      good.jwk,
      { ...base('enc'), use: 'enc' },
      { ...base('noalg'), alg: undefined },
      { ...base('es256'), alg: 'ES256' },
      { ...base('hs'), kty: 'oct', k: 'c2VjcmV0', alg: 'HS256' },
      { ...base('wrongcrv'), crv: 'Ed448' },
      { ...base('ops'), key_ops: ['sign'] },
      privateJwk,
      base('dup'),
      base('dup'),
      { ...base('x'), kid: undefined },
      { ...base('badx'), x: 'not-a-key' },
      null as unknown as Record<string, unknown>,
      'junk' as unknown as Record<string, unknown>,
    ]
    const client = new JwksClient({ jwksUrl: server.jwksUrl })
    try {
      await client.ready
      assert.deepEqual(client.kids(), ['good'])
    } finally {
      client.close()
      await server.close()
    }
  })

  test('an oversized JWKS response is refused', async () => {
    const server = await startJwksServer([ed25519Key('k1'), ed25519Key('k2')])
    const events: JwksFetchEvent[] = []
    const client = new JwksClient({ jwksUrl: server.jwksUrl, maxResponseBytes: 100, onFetch: (e) => events.push(e) })
    try {
      await waitFor(() => events.length >= 1)
      assert.equal(events[0]?.result, 'failed')
      assert.equal(client.loaded, false)
    } finally {
      client.close()
      await server.close()
    }
  })

  test('options are validated', () => {
    assert.throws(() => new JwksClient({}), TypeError)
    assert.throws(() => new JwksClient({ jwksUrl: 'file:///etc/passwd' }), TypeError)
    assert.throws(() => new JwksClient({ jwksUrl: 'http://127.0.0.1:1/jwks', algorithms: ['none' as 'EdDSA'] }), TypeError)
  })
})

function catchSync(fn: () => unknown): unknown {
  try {
    fn()
  } catch (err) {
    return err
  }
  assert.fail('expected a throw')
}
