import { test } from 'node:test'
import assert from 'node:assert/strict'
import { MemoryDenyList } from '../../../src/store/memory/deny-list.js'
import { parseFeedEvent } from '../../../src/gateway/feed/parse.js'
import { REVOCATION_PERMANENT, type Revocation } from '../../../src/store/types.js'
import type { TokenFacts } from '../../../src/store/deny-list.js'

const facts: TokenFacts = { jti: 'j1', tenant: 'acme', agentId: 'bot', clientId: 'c1', kid: 'k1', iat: 1000 }
function rev(seq: number, p: Partial<Revocation> & Pick<Revocation, 'type' | 'value'>): Revocation {
  return { seq, tenant: 'acme', agentId: null, reason: null, createdAt: 0, expiresAt: REVOCATION_PERMANENT, ...p }
}

test('a lift drops its entry and advances lastSeq; another entry on the same key stays in force', () => {
  const d = new MemoryDenyList()
  const first = rev(1, { type: 'agent', value: 'bot' })
  const second = rev(2, { type: 'agent', value: 'bot' })
  d.apply(first)
  d.apply(second)
  d.lift(first.seq, 3)
  assert.equal(d.lastSeq, 3)
  assert.equal(d.size, 1)
  assert.equal(d.match(facts), second, 'the other entry for the agent still refuses')
  d.lift(second.seq, 4)
  assert.equal(d.match(facts), null)
  assert.equal(d.lastSeq, 4)
  d.lift(99, 5)
  assert.equal(d.lastSeq, 5, 'a lift of an entry never held still counts as applied')
})

test('lifting a client or tenant entry leaves the other kinds in force', () => {
  const d = new MemoryDenyList()
  d.apply(rev(1, { type: 'client', value: 'c1' }))
  d.apply(rev(2, { type: 'tenant', value: 'acme' }))
  d.apply(rev(3, { type: 'jti', value: 'j1', expiresAt: 10_000 }))
  d.lift(2, 4)
  assert.equal(d.match(facts)?.seq, 3)
  d.lift(1, 5)
  assert.equal(d.match({ ...facts, jti: 'other' }), null)
  assert.equal(d.match(facts)?.seq, 3)
})

test('a permanent entry survives pruning at any time', () => {
  const d = new MemoryDenyList()
  d.apply(rev(1, { type: 'agent', value: 'bot' }))
  d.prune(Date.now() + 100 * 365 * 86_400_000)
  assert.equal(d.match(facts)?.seq, 1)
})

test('the feed event of a lift parses; a malformed one does not', () => {
  const r = rev(7, { type: 'agent', value: 'bot', liftedAt: 5, expiresAt: 5 })
  assert.deepEqual(parseFeedEvent(JSON.parse(JSON.stringify({ kind: 'revocation_lifted', seq: 9, revocation: r }))), {
    kind: 'revocation_lifted',
    seq: 9,
    revocation: { seq: 7, type: 'agent', value: 'bot', tenant: 'acme', agentId: null, reason: null, createdAt: 0, expiresAt: 5 },
  })
  assert.equal(parseFeedEvent({ kind: 'revocation_lifted', revocation: r }), null, 'no seq')
  assert.equal(parseFeedEvent({ kind: 'revocation_lifted', seq: 9 }), null, 'no entry')
})
