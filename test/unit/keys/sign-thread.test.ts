import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createPublicKey, generateKeyPairSync, verify } from 'node:crypto'
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify, type JSONWebKeySet } from 'jose'
import { ed25519Signer } from '../../../src/control-plane/keys/ed25519-signer.js'
import { createKeyManager } from '../../../src/control-plane/keys/index.js'
import { SigningThread } from '../../../src/control-plane/keys/sign-thread.js'
import { Metrics } from '../../../src/observability/metrics.js'
import { logger, manualClock, tempSqlite, testConfig } from './fixture.js'

function keyPair(): { der: Buffer; publicKey: ReturnType<typeof createPublicKey> } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519')
  return { der: privateKey.export({ format: 'der', type: 'pkcs8' }), publicKey }
}

test('signatures made on the signing thread are those of the in-place signer, batched per key within one turn of the event loop', async (t) => {
  const thread = await SigningThread.start()
  t.after(() => thread.close())
  const a = keyPair()
  const b = keyPair()
  const inPlaceA = ed25519Signer(a.der)
  const inPlaceB = ed25519Signer(b.der, 'node:crypto')
  const signerA = thread.signer('kid-a', a.der, ed25519Signer(a.der))
  const signerB = thread.signer('kid-b', b.der, ed25519Signer(b.der, 'node:crypto'))
  assert.equal(signerA.publicX, inPlaceA.publicX)
  // One turn: 200 signatures under two keys, every byte value in the messages.
  const messages = Array.from({ length: 200 }, (_, i) => Buffer.from(Array.from({ length: 40 + i }, (_, j) => (i * 7 + j) % 256)))
  const signed = await Promise.all(messages.map((m, i) => (i % 2 === 0 ? signerA : signerB).signAsync(m)))
  for (const [i, m] of messages.entries()) {
    const expected = (i % 2 === 0 ? inPlaceA : inPlaceB).sign(m)
    assert.deepEqual(signed[i], expected, `signature ${i}`)
    assert.equal(verify(null, m, i % 2 === 0 ? a.publicKey : b.publicKey, signed[i]!), true)
  }
})

test('a destroyed signer no longer signs, on the thread or in place', async (t) => {
  const thread = await SigningThread.start()
  t.after(() => thread.close())
  const { der } = keyPair()
  const signer = thread.signer('kid-gone', der, ed25519Signer(der))
  assert.equal((await signer.signAsync(Buffer.from('before'))).length, 64)
  signer.destroy()
  await assert.rejects(signer.signAsync(Buffer.from('after')), /destroyed/)
})

test('when the signing thread is gone, signing goes on in place with the same signatures', async () => {
  const thread = await SigningThread.start()
  const { der, publicKey } = keyPair()
  const signer = thread.signer('kid-x', der, ed25519Signer(der))
  const message = Buffer.from('eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0')
  const onThread = await signer.signAsync(message)
  // Stopped while a batch is being handed over: those signatures come from the in-place signer.
  const pending = signer.signAsync(message)
  await thread.close()
  assert.equal(thread.alive, false)
  assert.deepEqual(await pending, onThread)
  assert.deepEqual(await signer.signAsync(message), onThread)
  assert.equal(verify(null, message, publicKey, onThread), true)
})

test('a key manager with the signing thread signs tokens there that verify against its JWKS, and after a rotation under the new key', async (t) => {
  const { store, cleanup } = await tempSqlite()
  t.after(cleanup)
  const clock = manualClock()
  const keys = await createKeyManager({ config: testConfig(), store, clock, logger, metrics: new Metrics(), signingThread: true })
  t.after(() => keys.stop())
  assert.equal(keys.signsOffThread, true)
  const verifyWith = async (jwt: string) => (await jwtVerify(jwt, createLocalJWKSet(keys.jwks() as JSONWebKeySet))).payload
  const first = await Promise.all(Array.from({ length: 50 }, (_, i) => keys.signJwtAsync({ typ: 'at+jwt' }, { sub: `agent-${i}`, exp: clock.now() / 1000 + 60 })))
  for (const [i, { jwt, kid }] of first.entries()) {
    assert.equal((await verifyWith(jwt)).sub, `agent-${i}`)
    assert.equal(decodeProtectedHeader(jwt).kid, kid)
  }
  await keys.rotate({ emergency: true, actor: 'test' })
  const after = await keys.signJwtAsync({ typ: 'at+jwt' }, { sub: 'after', exp: clock.now() / 1000 + 60 })
  assert.notEqual(after.kid, first[0]!.kid)
  assert.equal((await verifyWith(after.jwt)).sub, 'after')
})
