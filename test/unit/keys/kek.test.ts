import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { decryptPrivateKey, encryptPrivateKey, KekError, loadKek } from '../../../src/control-plane/keys/kek.js'
import { testConfig } from './fixture.js'

test('a private key survives the AES-256-GCM round trip under its kid', () => {
  const kek = randomBytes(32)
  const secret = randomBytes(48)
  const blob = encryptPrivateKey(kek, 'kid-1', secret)
  assert.ok(!blob.includes(secret.toString('base64url')))
  assert.deepEqual(decryptPrivateKey(kek, 'kid-1', blob), secret)
  // A fresh IV every time: the same key never gives the same ciphertext.
  assert.notEqual(encryptPrivateKey(kek, 'kid-1', secret), blob)
})

test('a ciphertext moved to another kid, under another KEK, or altered does not decrypt', () => {
  const kek = randomBytes(32)
  const blob = encryptPrivateKey(kek, 'kid-1', randomBytes(48))
  assert.throws(() => decryptPrivateKey(kek, 'kid-2', blob), KekError)
  assert.throws(() => decryptPrivateKey(randomBytes(32), 'kid-1', blob), KekError)
  const raw = Buffer.from(blob, 'base64url')
  raw[raw.length - 1]! ^= 1
  assert.throws(() => decryptPrivateKey(kek, 'kid-1', raw.toString('base64url')), KekError)
  assert.throws(() => decryptPrivateKey(kek, 'kid-1', 'AAAA'), /truncated/)
})

test('the KEK is read from AEGIS_KEK as hex or base64, and anything else is refused without echoing it', async () => {
  const key = randomBytes(32)
  assert.deepEqual(await loadKek(testConfig({ kek: key.toString('hex') }), { createIfMissing: false }), key)
  assert.deepEqual(await loadKek(testConfig({ kek: key.toString('base64') }), { createIfMissing: false }), key)
  assert.deepEqual(await loadKek(testConfig({ kek: key.toString('base64url') }), { createIfMissing: false }), key)
  await assert.rejects(loadKek(testConfig({ kek: 'not-a-key-at-all' }), { createIfMissing: true }), (err: Error) => {
    assert.ok(err instanceof KekError)
    assert.match(err.message, /32 bytes/)
    assert.ok(!err.message.includes('not-a-key-at-all'))
    return true
  })
  const short = randomBytes(16).toString('base64')
  await assert.rejects(loadKek(testConfig({ kek: short }), { createIfMissing: true }), KekError)
})

test('a KEK file holds raw bytes or text', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'aegis-kek-'))
  const key = randomBytes(32)
  writeFileSync(join(dir, 'raw'), key)
  writeFileSync(join(dir, 'text'), `${key.toString('base64')}\n`)
  assert.deepEqual(await loadKek(testConfig({ kek: undefined, kekFile: join(dir, 'raw') }), { createIfMissing: false }), key)
  assert.deepEqual(await loadKek(testConfig({ kek: undefined, kekFile: join(dir, 'text') }), { createIfMissing: false }), key)
  await assert.rejects(loadKek(testConfig({ kek: undefined, kekFile: join(dir, 'missing') }), { createIfMissing: false }), /cannot read KEK file/)
})

test('without a KEK the control plane refuses to start, unless asked to create one (mode 0600, dir 0700)', async () => {
  const base = testConfig({ kek: undefined })
  const dataDir = join(base.dataDir, 'fresh')
  const cfg = testConfig({ kek: undefined, dataDir })
  await assert.rejects(loadKek(cfg, { createIfMissing: false }), (err: Error) => {
    assert.ok(err instanceof KekError)
    assert.match(err.message, /AEGIS_KEK/)
    return true
  })
  const created = await loadKek(cfg, { createIfMissing: true })
  assert.equal(created.length, 32)
  assert.equal(statSync(join(dataDir, 'kek')).mode & 0o777, 0o600)
  assert.equal(statSync(dataDir).mode & 0o777, 0o700)
  assert.deepEqual(readFileSync(join(dataDir, 'kek')), created)
  // Found again, never replaced.
  assert.deepEqual(await loadKek(cfg, { createIfMissing: true }), created)
  assert.deepEqual(await loadKek(cfg, { createIfMissing: false }), created)
  // An explicit kekFile is created where it points when asked (aegis dev).
  const file = join(base.dataDir, 'sub', 'my.kek')
  const made = await loadKek(testConfig({ kek: undefined, kekFile: file }), { createIfMissing: true })
  assert.deepEqual(readFileSync(file), made)
  assert.equal(statSync(file).mode & 0o777, 0o600)
})
