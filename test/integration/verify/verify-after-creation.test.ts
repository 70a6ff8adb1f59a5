/**
 * `await verifier.verify(token)` works right after `createVerifier` (it waits
 * for the first key load, bounded by keyWaitMs); `verifySync` is the
 * synchronous hot path once keys are held.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createVerifier, VerifyError } from '../../../src/verify/index.js'
import { AUDIENCE, claimsAt, ed25519Key, signToken, startJwksServer } from '../../unit/verify/fixtures.js'

const ISSUER = 'https://aegis.test'

test('await verify(token) right after creation waits for the first key load; verifySync then needs no promise', async () => {
  const k1 = ed25519Key('k1')
  const server = await startJwksServer([k1])
  const token = await signToken(k1, claimsAt(ISSUER, Math.floor(Date.now() / 1000)))
  const verifier = createVerifier({ issuer: ISSUER, audience: AUDIENCE, jwksUrl: server.jwksUrl })
  try {
    // Before the first load the synchronous form says so instead of waiting.
    assert.throws(
      () => verifier.verifySync(token),
      (err: unknown) => err instanceof VerifyError && err.reason === 'keys_not_loaded',
    )
    const verified = await verifier.verify(token)
    assert.equal(verified.kid, 'k1')
    assert.equal(verified.claims.iss, ISSUER)
    const again = verifier.verifySync(token)
    assert.equal(again, verified, 'the cached result, synchronously')
    assert.ok(!(again instanceof Promise))
    // The deprecated name still works.
    assert.equal((await verifier.verifyAsync(token)).kid, 'k1')
  } finally {
    verifier.close()
    await server.close()
  }
})

test('a bad token is refused by verify as a rejection, never a synchronous throw', async () => {
  const k1 = ed25519Key('k1')
  const server = await startJwksServer([k1])
  const verifier = createVerifier({ issuer: ISSUER, audience: AUDIENCE, jwksUrl: server.jwksUrl })
  try {
    const pending = verifier.verify('not.a-token')
    assert.ok(pending instanceof Promise)
    await assert.rejects(pending, (err: unknown) => err instanceof VerifyError && err.code === 'invalid_token' && err.reason === 'malformed')
  } finally {
    verifier.close()
    await server.close()
  }
})

test('keys that never come: verify gives up after keyWaitMs with keys_not_loaded', async () => {
  const k1 = ed25519Key('k1')
  const server = await startJwksServer([k1])
  server.mode = 'slow'
  const token = await signToken(k1, claimsAt(ISSUER, Math.floor(Date.now() / 1000)))
  const verifier = createVerifier({ issuer: ISSUER, audience: AUDIENCE, jwksUrl: server.jwksUrl, keyWaitMs: 200 })
  try {
    await assert.rejects(verifier.verify(token), (err: unknown) => err instanceof VerifyError && err.reason === 'keys_not_loaded')
  } finally {
    verifier.close()
    await server.close()
  }
})
