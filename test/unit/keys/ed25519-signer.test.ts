import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createPublicKey, generateKeyPairSync, randomBytes, sign, verify } from 'node:crypto'
import { ed25519Signer } from '../../../src/control-plane/keys/ed25519-signer.js'

function keyPair(): { der: Buffer; x: string; privateKey: ReturnType<typeof generateKeyPairSync>['privateKey'] } {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519')
  const der = privateKey.export({ format: 'der', type: 'pkcs8' })
  const x = (publicKey.export({ format: 'jwk' }) as { x: string }).x
  return { der, x, privateKey }
}

test('libsodium signs here (sodium-native ships a prebuilt addon for this platform), node:crypto when asked', () => {
  const { der } = keyPair()
  assert.equal(ed25519Signer(der).backend, 'libsodium')
  assert.equal(ed25519Signer(der, 'libsodium').backend, 'libsodium')
  assert.equal(ed25519Signer(der, 'node:crypto').backend, 'node:crypto')
  // keys.ed25519 = libsodium refuses what libsodium cannot take rather than fall back.
  assert.throws(() => ed25519Signer(Buffer.concat([der, Buffer.alloc(1)]), 'libsodium'), /not an Ed25519 PKCS #8 key/)
})

test('libsodium and node:crypto sign byte for byte the same (RFC 8032 signatures are deterministic), and both verify', async () => {
  for (let i = 0; i < 50; i++) {
    const { der, x, privateKey } = keyPair()
    const sodium = ed25519Signer(der)
    const openssl = ed25519Signer(der, 'node:crypto')
    assert.equal(sodium.publicX, x)
    assert.equal(openssl.publicX, x)
    const message = randomBytes(i * 13)
    const expected = sign(null, message, privateKey)
    assert.deepEqual(sodium.sign(message), expected)
    assert.deepEqual(openssl.sign(message), expected)
    assert.deepEqual(await sodium.signAsync(message), expected)
    assert.deepEqual(await openssl.signAsync(message), expected)
    assert.ok(verify(null, message, createPublicKey(privateKey), sodium.sign(message)))
  }
})

test('a destroyed libsodium signer refuses to sign, synchronously and as a rejected promise', async () => {
  const { der } = keyPair()
  const signer = ed25519Signer(der)
  signer.destroy()
  assert.throws(() => signer.sign(Buffer.from('x')), /destroyed/)
  await assert.rejects(signer.signAsync(Buffer.from('x')), /destroyed/)
})

test('a key that is not a plain Ed25519 PKCS #8 is left to node:crypto, which rejects what is not Ed25519', () => {
  const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ format: 'der', type: 'pkcs8' })
  assert.throws(() => ed25519Signer(rsa), /not an Ed25519 private key/)
  assert.throws(() => ed25519Signer(randomBytes(48)))
})
