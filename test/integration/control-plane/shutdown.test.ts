import { test } from 'node:test'
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { openSqliteStore } from '../../../src/store/index.js'
import { basic, form, seedAgent, startControlPlane } from './harness.js'

test('close() drains: every token a client received has its token.issued event on disk', async () => {
  const h = await startControlPlane()
  const s = await seedAgent(h)
  const fire = () =>
    form(h, '/oauth2/token', { grant_type: 'client_credentials' }, { authorization: basic(s.clientId, s.secret) }).catch((e: Error) => {
      errors.push(e.message)
      return null
    })
  const errors: string[] = []
  // Keep 20 requests in flight, and close while they are.
  const inflight: Array<ReturnType<typeof fire>> = []
  for (let i = 0; i < 20; i++) inflight.push(fire())
  await Promise.race(inflight)
  for (let i = 0; i < 20; i++) inflight.push(fire())
  await h.cp.close()
  const results = await Promise.all(inflight)
  const jtis = results
    .filter((r): r is NonNullable<typeof r> => r !== null && r.status === 200)
    .map((r) => JSON.parse(Buffer.from(String(r.body.access_token).split('.')[1]!, 'base64url').toString()).jti as string)
  assert.ok(jtis.length > 0, 'some requests completed')
  const store = await openSqliteStore(join(h.config.dataDir, 'aegis.db'))
  try {
    const events = await store.audit.query({ type: 'token.issued', limit: 1000 })
    const stored = new Set(events.map((e) => e.subject))
    for (const jti of jtis) assert.ok(stored.has(jti), `token ${jti} was returned without a durable audit event`)
  } finally {
    await store.close()
    await h.close()
  }
})
