import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { MemoryDenyList } from '../../../src/store/memory/deny-list.js'
import type { Revocation } from '../../../src/store/types.js'
import type { TokenFacts } from '../../../src/store/deny-list.js'

let seq = 0
function rev(p: Partial<Revocation> & Pick<Revocation, 'type' | 'value'>): Revocation {
  return { seq: ++seq, tenant: null, agentId: null, reason: null, createdAt: 0, expiresAt: 10_000, ...p }
}
const facts: TokenFacts = { jti: 'j1', tenant: 'acme', agentId: 'bot', clientId: 'c1', kid: 'k1', iat: 1000 }

describe('MemoryDenyList', () => {
  test('each of the six entry types matches exactly its tokens', () => {
    const cases: Array<[Revocation, Partial<TokenFacts>]> = [
      [rev({ type: 'jti', value: 'j1' }), { jti: 'j2' }],
      [rev({ type: 'agent', value: 'bot', tenant: 'acme' }), { agentId: 'other' }],
      [rev({ type: 'client', value: 'c1', tenant: 'acme' }), { clientId: 'c2' }],
      [rev({ type: 'tenant', value: 'acme', tenant: 'acme' }), { tenant: 'globex' }],
      [rev({ type: 'kid', value: 'k1' }), { kid: 'k2' }],
      [rev({ type: 'issued_before', value: '1001', tenant: 'acme' }), { iat: 1001 }],
      [rev({ type: 'issued_before', value: '1001', tenant: 'acme', agentId: 'bot' }), { agentId: 'other' }],
      [rev({ type: 'issued_before', value: '1001' }), { iat: 1002 }],
    ]
    for (const [r, miss] of cases) {
      const d = new MemoryDenyList()
      assert.equal(d.match(facts), null)
      d.apply(r)
      assert.equal(d.match(facts), r, `${r.type} matches`)
      assert.equal(d.match({ ...facts, ...miss }), null, `${r.type} does not match ${JSON.stringify(miss)}`)
    }
  })

  test('replaceWith takes over a list built elsewhere: its entries only, the higher last seq, and the built list is spent', () => {
    const held = new MemoryDenyList()
    const old = rev({ type: 'jti', value: 'j1' })
    held.apply(old)
    const built = new MemoryDenyList()
    const agent = rev({ type: 'agent', value: 'bot', tenant: 'acme' })
    const before = rev({ type: 'issued_before', value: '2000', tenant: 'acme', agentId: 'bot' })
    built.apply(agent)
    built.apply(before)
    held.replaceWith(built, before.seq + 5)
    assert.equal(held.size, 2)
    assert.equal(held.lastSeq, before.seq + 5)
    assert.equal(held.match({ ...facts, agentId: 'other', iat: 3000 }), null, 'the entries held before are gone')
    assert.equal(held.match(facts), agent)
    assert.equal(held.match({ ...facts, jti: 'jx', agentId: 'bot', clientId: 'cx' }), agent)
    const late = rev({ type: 'tenant', value: 'acme', tenant: 'acme' })
    built.apply(late)
    assert.equal(built.size, 1)
    assert.equal(held.size, 2, 'applying to the spent list changes nothing held')
    assert.throws(() => held.replaceWith({ ...built, replaceWith: () => {} } as never, 1), TypeError)
  })

  test('agent and client entries are scoped to their tenant', () => {
    const d = new MemoryDenyList()
    d.apply(rev({ type: 'agent', value: 'bot', tenant: 'globex' }))
    d.apply(rev({ type: 'client', value: 'c1', tenant: 'globex' }))
    assert.equal(d.match(facts), null)
  })

  test('apply is idempotent by seq; lastSeq and size follow', () => {
    const d = new MemoryDenyList()
    const r = rev({ type: 'jti', value: 'j1' })
    d.apply(r)
    d.apply(r)
    assert.equal(d.size, 1)
    assert.equal(d.lastSeq, r.seq)
  })

  test('prune drops expired entries but never un-revokes a key still covered by a longer-lived entry', () => {
    const d = new MemoryDenyList()
    const short = rev({ type: 'agent', value: 'bot', tenant: 'acme', expiresAt: 100 })
    const long = rev({ type: 'agent', value: 'bot', tenant: 'acme', expiresAt: 5000 })
    d.apply(long)
    d.apply(short)
    d.prune(200)
    assert.equal(d.size, 1)
    assert.equal(d.match(facts), long)
    d.prune(6000)
    assert.equal(d.size, 0)
    assert.equal(d.match(facts), null)
  })

  test('issued_before keeps the latest T per scope, also after pruning another', () => {
    const d = new MemoryDenyList()
    d.apply(rev({ type: 'issued_before', value: '900', tenant: 'acme', expiresAt: 100 }))
    const later = rev({ type: 'issued_before', value: '2000', tenant: 'acme', expiresAt: 9000 })
    d.apply(later)
    d.prune(500)
    assert.equal(d.match({ ...facts, iat: 1500 }), later)
    assert.equal(d.match({ ...facts, iat: 2000 }), null)
  })

  test('reset replaces everything', () => {
    const d = new MemoryDenyList()
    d.apply(rev({ type: 'jti', value: 'j1' }))
    const k = rev({ type: 'kid', value: 'k9' })
    d.reset([k], 77)
    assert.equal(d.match(facts), null)
    assert.equal(d.match({ ...facts, kid: 'k9' }), k)
    assert.equal(d.lastSeq, 77)
  })
})
