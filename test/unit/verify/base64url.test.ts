import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { decodeBase64url } from '../../../src/verify/base64url.js'

const decode = (s: string, canonical = true) => decodeBase64url(s, 0, s.length, canonical)

test('decodes every length like Buffer does, and flags ASCII-only bytes', () => {
  for (let n = 1; n <= 200; n++) {
    for (const bytes of [randomBytes(n), Buffer.from('a'.repeat(n))]) {
      const text = bytes.toString('base64url')
      const d = decode(text)
      assert.ok(d !== null, `length ${n}`)
      assert.deepEqual(d.bytes, bytes)
      assert.equal(
        d.ascii,
        bytes.every((b) => b < 0x80),
      )
    }
  }
})

test('decodes a slice of a longer string (a token segment between dots)', () => {
  const payload = Buffer.from('{"sub":"agent","jti":"x"}')
  const token = `abc.${payload.toString('base64url')}.def`
  const d = decodeBase64url(token, 4, token.length - 4, false)
  assert.deepEqual(d?.bytes, payload)
})

test('refuses characters outside the URL-safe alphabet, padding and impossible lengths', () => {
  for (const bad of ['', 'A', 'AAAAA', 'AB+C', 'AB/C', 'AA==', 'AAA=', 'AA A', 'AAé', 'A\u0000AA', 'AA\uffff', 'AA.A', 'QUJD\n']) {
    assert.equal(decode(bad), null, JSON.stringify(bad))
    assert.equal(decode(bad, false), null, JSON.stringify(bad))
  }
})

test('canonical decoding refuses another spelling of the same bytes; lenient decoding accepts it', () => {
  // 'QQ' is the canonical spelling of "A"; 'QR' sets unused trailing bits.
  assert.deepEqual(decode('QQ')?.bytes, Buffer.from('A'))
  assert.equal(decode('QR'), null)
  assert.deepEqual(decode('QR', false)?.bytes, Buffer.from('A'))
  // Two bytes: the last character carries two unused bits.
  assert.deepEqual(decode('QUI')?.bytes, Buffer.from('AB'))
  assert.equal(decode('QUJ'), null)
  // A 64-byte signature whose last character was bumped: same bytes, refused when canonical.
  const sig = randomBytes(64).toString('base64url')
  const last = sig.charCodeAt(sig.length - 1)
  const bumped = sig.slice(0, -1) + String.fromCharCode(last === 65 + 25 ? 97 : last + 1)
  if (Buffer.from(bumped, 'base64url').equals(Buffer.from(sig, 'base64url'))) assert.equal(decode(bumped), null)
})
