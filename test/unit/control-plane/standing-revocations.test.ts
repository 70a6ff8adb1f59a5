import { test } from 'node:test'
import assert from 'node:assert/strict'
import { StandingRevocations } from '../../../src/control-plane/revocation/standing.js'
import { openSqliteStore } from '../../../src/store/index.js'
import { REVOCATION_PERMANENT, type Revocation, type Store } from '../../../src/store/types.js'

const NOW = 1_700_000_000_000
const entry = (type: Revocation['type'], value: string, tenant: string | null = 'acme'): Omit<Revocation, 'seq'> => ({
  type,
  value,
  tenant,
  agentId: null,
  reason: null,
  createdAt: NOW,
  expiresAt: type === 'jti' ? NOW + 60_000 : REVOCATION_PERMANENT,
})
const subject = { tenant: 'acme', agentId: 'bot', clientIds: ['cred-1', 'bot-client'] }

async function withStore(fn: (store: Store) => Promise<void>): Promise<void> {
  const store = await openSqliteStore(':memory:')
  try {
    await fn(store)
  } finally {
    await store.close()
  }
}

test("matches agent, client (any of the subject's client ids) and tenant entries, never an unloaded empty list", () =>
  withStore(async (store) => {
    const s = new StandingRevocations(store.revocations, () => NOW)
    const agent = await store.revocations.add(entry('agent', 'bot'))
    // Before the first load, match answers from the store, not from an empty list.
    const early = s.match(subject)
    assert.ok(early instanceof Promise)
    assert.equal((await early)?.seq, agent.seq)
    assert.equal(s.match({ ...subject, agentId: 'other' }), null)
    assert.equal(s.match({ ...subject, tenant: 'globex' }), null, 'agent entries are scoped to their tenant')
    const client = await store.revocations.add(entry('client', 'bot-client'))
    await s.refresh()
    assert.equal((s.match({ ...subject, agentId: 'other' }) as Revocation).seq, client.seq)
    const tenant = await store.revocations.add(entry('tenant', 'acme'))
    await store.revocations.add(entry('jti', 'j1'))
    await s.refresh()
    assert.equal(s.size, 3, 'jti entries are not held')
    assert.equal((s.match({ tenant: 'acme', agentId: 'x', clientIds: [] }) as Revocation).seq, tenant.seq)
  }))

test("a lift heard on the feed drops the entry at once; refresh() picks up a peer's lift from the store", () =>
  withStore(async (store) => {
    const s = new StandingRevocations(store.revocations, () => NOW)
    const a = await store.revocations.add(entry('agent', 'bot'))
    const b = await store.revocations.add(entry('client', 'cred-1'))
    await s.ready()
    const liftedA = (await store.revocations.lift(a.seq, NOW, 'admin:x'))!
    s.onFeedEvent({ kind: 'revocation_lifted', seq: liftedA.liftSeq!, revocation: liftedA })
    assert.equal((s.match(subject) as Revocation).seq, b.seq)
    // Another control plane lifts b; nothing is heard, the sequence moved.
    await store.revocations.lift(b.seq, NOW, 'admin:y')
    await s.refresh()
    assert.equal(s.match(subject), null)
  }))

test('a revocation heard while a reload is reading is kept, whatever the reload read', () =>
  withStore(async (store) => {
    let release!: () => void
    const gate = new Promise<void>((r) => {
      release = r
    })
    const slow = {
      lastSeq: () => store.revocations.lastSeq(),
      listStanding: async (now: number) => {
        const list = await store.revocations.listStanding(now)
        await gate
        return list
      },
    }
    const s = new StandingRevocations(slow, () => NOW)
    const reading = s.reload()
    const r = await store.revocations.add(entry('agent', 'bot'))
    s.apply(r)
    release()
    await reading
    assert.equal((s.match(subject) as Revocation).seq, r.seq)
  }))
