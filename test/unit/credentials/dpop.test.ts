import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { generateKeyPairSync } from 'node:crypto'
import { compactVerify, createLocalJWKSet, importJWK, jwtVerify } from 'jose'
import { DpopNonces, DpopProofError, accessTokenHash, normalizeHtu, verifyDpopProof } from '../../../src/lib/dpop.js'
import { DpopKey, publicJwk, signJws } from '../../../src/sdk/index.js'

const URL_ = 'https://gw.example:8443/v1/authorize'
const NOW = 1_800_000_000

function check(o: Partial<Parameters<typeof verifyDpopProof>[1]> = {}): Parameters<typeof verifyDpopProof>[1] {
  return { method: 'POST', url: URL_, now: NOW, maxAgeSeconds: 60, skewSeconds: 5, ...o }
}

describe('lib/dpop', () => {
  test('htu normalization drops query, fragment and default ports, lower-cases scheme and host', () => {
    assert.equal(normalizeHtu('HTTPS://GW.Example:443/a/b?x=1#f'), 'https://gw.example/a/b')
    assert.equal(normalizeHtu('http://h:8080/p'), 'http://h:8080/p')
    assert.equal(normalizeHtu('ftp://h/p'), null)
    assert.equal(normalizeHtu('not a url'), null)
  })

  test('an SDK proof verifies, with the RFC 7638 thumbprint and ath', async () => {
    const key = DpopKey.generate('EdDSA')
    const proof = key.proof('post', `${URL_}?q=1`, { accessToken: 'tok', iat: NOW })
    const v = await verifyDpopProof(proof, check({ accessToken: 'tok' }))
    assert.equal(typeof v.jkt, 'string')
    assert.equal(v.iat, NOW)
    assert.ok(v.replayUntil > NOW)
    await assert.rejects(verifyDpopProof(proof, check({ accessToken: 'other' })), DpopProofError)
  })

  test('method, URL, iat window and missing jti are enforced', async () => {
    const key = DpopKey.generate('ES256')
    await assert.rejects(verifyDpopProof(key.proof('GET', URL_, { iat: NOW }), check()), /htm/)
    await assert.rejects(verifyDpopProof(key.proof('POST', 'https://gw.example:8443/v1/other', { iat: NOW }), check()), /htu/)
    await assert.rejects(verifyDpopProof(key.proof('POST', URL_, { iat: NOW - 120 }), check()), /iat/)
    await assert.rejects(verifyDpopProof(key.proof('POST', URL_, { iat: NOW + 60 }), check()), /iat/)
    const { privateKey } = generateKeyPairSync('ed25519')
    const noJti = signJws({ typ: 'dpop+jwt', jwk: publicJwk(privateKey) }, { htm: 'POST', htu: URL_, iat: NOW }, privateKey, 'EdDSA')
    await assert.rejects(verifyDpopProof(noJti, check()), /jti/)
  })

  test('a proof with private key material in its jwk is refused', async () => {
    const { privateKey } = generateKeyPairSync('ed25519')
    const leaky = signJws(
      { typ: 'dpop+jwt', jwk: privateKey.export({ format: 'jwk' }) },
      { htm: 'POST', htu: URL_, iat: NOW, jti: 'abcdefgh12' },
      privateKey,
      'EdDSA',
    )
    await assert.rejects(verifyDpopProof(leaky, check()), /private/)
  })

  test('nonces: required, accepted for the current and previous bucket, refused when forged or stale', async () => {
    const nonces = new DpopNonces('secret', 120)
    const other = new DpopNonces('another secret', 120)
    const n = nonces.issue(NOW)
    assert.equal(nonces.valid(n, NOW), true)
    assert.equal(nonces.valid(n, NOW + 120), true)
    assert.equal(nonces.valid(n, NOW + 360), false)
    assert.equal(other.valid(n, NOW), false)
    assert.equal(nonces.valid('zz', NOW), false)
    const key = DpopKey.generate()
    const nonce = { valid: (x: string) => nonces.valid(x, NOW), required: true }
    await assert.rejects(verifyDpopProof(key.proof('POST', URL_, { iat: NOW }), check({ nonce })), (e: unknown) => e instanceof DpopProofError && e.nonce)
    await verifyDpopProof(key.proof('POST', URL_, { iat: NOW, nonce: n }), check({ nonce }))
    await assert.rejects(
      verifyDpopProof(key.proof('POST', URL_, { iat: NOW, nonce: other.issue(NOW) }), check({ nonce })),
      (e: unknown) => e instanceof DpopProofError && e.nonce,
    )
  })

  test('accessTokenHash is base64url SHA-256 (RFC 9449 §4.2 ath)', () => {
    assert.equal(accessTokenHash('Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU'), 'fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo')
  })
})

describe('SDK JWS signing verifies with jose', () => {
  for (const [alg, pair] of [
    ['EdDSA', () => generateKeyPairSync('ed25519')],
    ['ES256', () => generateKeyPairSync('ec', { namedCurve: 'P-256' })],
    ['RS256', () => generateKeyPairSync('rsa', { modulusLength: 2048 })],
    ['PS256', () => generateKeyPairSync('rsa', { modulusLength: 2048 })],
  ] as const) {
    test(alg, async () => {
      const { privateKey } = pair()
      const jws = signJws({ typ: 'JWT', kid: 'k' }, { sub: 'x', exp: 4_000_000_000 }, privateKey, alg)
      const jwk = { ...publicJwk(privateKey), kid: 'k', alg }
      const { payload } = await jwtVerify(jws, createLocalJWKSet({ keys: [jwk] }), { algorithms: [alg] })
      assert.equal(payload.sub, 'x')
      await compactVerify(jws, await importJWK(jwk, alg))
    })
  }
})
