import { test } from 'node:test'
import assert from 'node:assert/strict'
import { generateKeyPairSync, randomBytes, sign } from 'node:crypto'
import { ed25519Verifier } from '../../../src/verify/ed25519.js'

const ORDER = 2n ** 252n + 27742317777372353535851937790883648493n

function littleEndian(bytes: Buffer): bigint {
  return BigInt(`0x${Buffer.from(bytes).reverse().toString('hex') || '0'}`)
}

function toLittleEndian(n: bigint, length: number): Buffer {
  return Buffer.from(n.toString(16).padStart(length * 2, '0'), 'hex').reverse()
}

test('auto picks libsodium here (sodium-native ships a prebuilt addon for this platform)', () => {
  assert.equal(ed25519Verifier('auto').backend, 'libsodium')
  assert.equal(ed25519Verifier('node:crypto').backend, 'node:crypto')
})

test('an unknown backend name is refused rather than silently mapped to a default', () => {
  for (const bad of ['openssl', '', 'LIBSODIUM', undefined]) {
    assert.throws(() => ed25519Verifier(bad as unknown as 'auto'), TypeError)
  }
})

test('libsodium and node:crypto agree on valid, tampered, malleated and foreign signatures', () => {
  const sodium = ed25519Verifier('libsodium').verify
  const openssl = ed25519Verifier('node:crypto').verify
  const { publicKey, privateKey } = generateKeyPairSync('ed25519')
  const other = generateKeyPairSync('ed25519').publicKey
  const raw = Buffer.from(publicKey.export({ format: 'jwk' }).x!, 'base64url')
  const otherRaw = Buffer.from(other.export({ format: 'jwk' }).x!, 'base64url')
  let checked = 0
  const agree = (input: Buffer, sig: Buffer, expected: boolean, k = raw, key = publicKey): void => {
    assert.equal(openssl(input, sig, k, key), expected)
    assert.equal(sodium(input, sig, k, key), expected)
    checked++
  }
  for (let i = 0; i < 200; i++) {
    const input = Buffer.from(`${randomBytes(12).toString('base64url')}.${randomBytes(1 + i).toString('base64url')}`)
    const sig = sign(null, input, privateKey)
    agree(input, sig, true)
    const flipped = Buffer.from(sig)
    flipped[i % 64]! ^= 1 << (i % 8)
    agree(input, flipped, false)
    const altered = Buffer.from(input)
    altered[i % altered.length]! ^= 0x20
    agree(altered, sig, false)
    agree(input, sig, false, otherRaw, other)
    // S + L is the same signature modulo the group order: both must refuse it (no malleability).
    const s = littleEndian(sig.subarray(32))
    agree(input, Buffer.concat([sig.subarray(0, 32), toLittleEndian(s + ORDER, 32)]), false)
  }
  agree(Buffer.from('x'), Buffer.alloc(64), false)
  assert.equal(checked, 1001)
})
