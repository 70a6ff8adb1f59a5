import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { admin, seedAgent, startControlPlane, type Harness } from './harness.js'

let h: Harness
before(async () => {
  h = await startControlPlane()
  await seedAgent(h, { tenant: 'acme', agent: 'a' })
  await seedAgent(h, { tenant: 'other', agent: 'b' })
})
after(async () => {
  await h?.close()
})

test('GET /admin/v1/revocations pages by seq, a tenant admin sees its tenant only, and bad paging is refused', async () => {
  const made: Array<{ seq: number; tenant: string }> = []
  for (let i = 0; i < 7; i++) {
    const tenant = i % 3 === 2 ? 'other' : 'acme'
    const r = await admin(h, h.adminToken, 'POST', '/revocations', { type: 'jti', value: `jti-${i}`, tenant })
    assert.equal(r.status, 201, r.text)
    made.push({ seq: r.body.seq as number, tenant })
  }
  // Lifted, an agent entry leaves the list; the issued_before entry its lift leaves (tokens from before stay revoked) joins it.
  const lifted = await admin(h, h.adminToken, 'POST', '/revocations', { type: 'agent', value: 'a', tenant: 'acme' })
  const lift = await admin(h, h.adminToken, 'DELETE', `/revocations/${lifted.body.seq}`)
  assert.equal(lift.status, 200)
  made.push({ seq: lift.body.issued_before_seq as number, tenant: 'acme' })

  // Every page of 3 in seq order; the last one (not full) has no next cursor.
  const seen: number[] = []
  let cursor: string | null = null
  let pages = 0
  do {
    const page = await admin(h, h.adminToken, 'GET', `/revocations?limit=3${cursor ? `&cursor=${cursor}` : ''}`)
    assert.equal(page.status, 200, page.text)
    assert.ok(page.body.revocations.length <= 3)
    seen.push(...page.body.revocations.map((r: { seq: number }) => r.seq))
    cursor = page.body.next_cursor as string | null
    assert.ok(page.body.last_seq >= lifted.body.seq)
    pages += 1
  } while (cursor !== null)
  assert.deepEqual(
    seen,
    made.map((m) => m.seq),
    'the lifted entry is not in force',
  )
  assert.equal(pages, 3)
  // Without paging parameters: up to 1,000 in one answer, as before.
  const all = await admin(h, h.adminToken, 'GET', '/revocations')
  assert.equal(all.body.revocations.length, 8)
  assert.equal(all.body.next_cursor, null)

  const tenantAdmin = (await admin(h, h.adminToken, 'POST', '/admin-tokens', { tenant: 'acme', role: 'admin', name: 'acme admin' })).body.token as string
  const first = await admin(h, tenantAdmin, 'GET', '/revocations?limit=4')
  const second = await admin(h, tenantAdmin, 'GET', `/revocations?limit=4&cursor=${first.body.next_cursor}`)
  assert.equal(second.body.next_cursor, null)
  assert.deepEqual(
    [...first.body.revocations, ...second.body.revocations].map((r: { seq: number }) => r.seq),
    made.filter((m) => m.tenant === 'acme').map((m) => m.seq),
    "full pages of the tenant's own entries",
  )

  for (const q of ['limit=0', 'limit=10001', 'limit=x', 'cursor=-1', 'limit=1&limit=2', 'after=3']) {
    const bad = await admin(h, h.adminToken, 'GET', `/revocations?${q}`)
    assert.equal(bad.status, 400, `${q}: ${bad.text}`)
    assert.equal(bad.body.error, 'invalid_request')
  }
})

test('GET /admin/v1/revocations?tenant=&agent_id= lists only the entries naming that agent of that tenant, paged; agent_id needs a tenant', async () => {
  const post = async (body: Record<string, unknown>) => {
    const r = await admin(h, h.adminToken, 'POST', '/revocations', body)
    assert.equal(r.status, 201, r.text)
    return r.body.seq as number
  }
  const since = Math.floor(Date.now() / 1000)
  await post({ type: 'jti', value: 'jti-of-r', tenant: 'acme' })
  const agentEntry = await post({ type: 'agent', value: 'r', tenant: 'acme' })
  await post({ type: 'agent', value: 'r', tenant: 'other' })
  await post({ type: 'agent', value: 'not-r', tenant: 'acme' })
  const scoped = await post({ type: 'issued_before', value: since, tenant: 'acme', agent_id: 'r' })
  await post({ type: 'issued_before', value: since, tenant: 'acme' })
  await post({ type: 'client', value: 'r', tenant: 'acme' })

  const seqs = (body: { revocations: Array<{ seq: number }> }) => body.revocations.map((r) => r.seq)
  const all = await admin(h, h.adminToken, 'GET', '/revocations?tenant=acme&agent_id=r')
  assert.equal(all.status, 200, all.text)
  assert.deepEqual(seqs(all.body), [agentEntry, scoped])
  const first = await admin(h, h.adminToken, 'GET', '/revocations?tenant=acme&agent_id=r&limit=1')
  assert.deepEqual(seqs(first.body), [agentEntry])
  const second = await admin(h, h.adminToken, 'GET', `/revocations?tenant=acme&agent_id=r&limit=1&cursor=${first.body.next_cursor}`)
  assert.deepEqual(seqs(second.body), [scoped])

  const other = await admin(h, h.adminToken, 'GET', '/revocations?tenant=other')
  assert.ok(other.body.revocations.length > 0)
  assert.ok(other.body.revocations.every((r: { tenant: string }) => r.tenant === 'other'))

  const tenantAdmin = (await admin(h, h.adminToken, 'POST', '/admin-tokens', { tenant: 'acme', role: 'admin', name: 'acme admin 2' })).body.token as string
  assert.deepEqual(seqs((await admin(h, tenantAdmin, 'GET', '/revocations?agent_id=r')).body), [agentEntry, scoped])
  assert.deepEqual(seqs((await admin(h, tenantAdmin, 'GET', '/revocations?tenant=acme&agent_id=r')).body), [agentEntry, scoped])
  const elsewhere = await admin(h, tenantAdmin, 'GET', '/revocations?tenant=other')
  assert.equal(elsewhere.status, 403, elsewhere.text)
  assert.equal(elsewhere.body.error, 'forbidden')

  const refused = ['agent_id=r', 'tenant=acme&agent_id=', 'tenant=bad%20tenant', `tenant=acme&agent_id=${'x'.repeat(65)}`]
  // A repeated parameter is refused, not read as a list or as its first value.
  refused.push('tenant=acme&tenant=other', 'tenant=acme&agent_id=r&agent_id=s')
  for (const q of refused) {
    const bad = await admin(h, h.adminToken, 'GET', `/revocations?${q}`)
    assert.equal(bad.status, 400, `${q}: ${bad.text}`)
    assert.equal(bad.body.error, 'invalid_request')
  }
})
