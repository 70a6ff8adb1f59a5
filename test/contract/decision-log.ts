/**
 * Contract of the decision log's repository (store/types.ts `DecisionRepo`)
 * on every SQL backend: a retried batch is stored once, every filter pages
 * newest first without gaps or repeats, retention deletes only what is older.
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import type { DecisionRecord, DecisionQuery, Store } from '../../src/store/types.js'
import type { StoreHandle } from './store.js'

const T0 = 1_700_000_000_000

let n = 0
/** A decision record with a fresh id and time (`over` replaces fields); shared with the SQLite append-thread test. */
export function record(over: Partial<DecisionRecord> = {}): DecisionRecord {
  n++
  return {
    id: n.toString(16).padStart(32, '0'),
    ts: T0 + n,
    receivedAt: T0 + 10_000,
    gatewayId: 'gw-1',
    type: 'decision',
    mode: 'authorize',
    tenant: 'acme',
    agentId: 'bot',
    clientId: 'cl_bot',
    jti: `jti-${n}`,
    tool: 'crm.read',
    resource: null,
    decision: 'allow',
    enforced: true,
    reasons: ['policy0'],
    policyVersion: 'v1',
    policyIds: ['policy0'],
    risk: 'normal',
    degraded: null,
    error: null,
    latencyMs: 0.25,
    traceId: null,
    params: { q: 'acme' },
    ...over,
  }
}

/** Every page of `q`, following the cursor. */
async function allPages(store: Store, q: Omit<DecisionQuery, 'limit'>, limit: number): Promise<DecisionRecord[]> {
  const out: DecisionRecord[] = []
  let after: DecisionQuery['after']
  for (;;) {
    const page = await store.decisions.query({ ...q, limit, ...(after ? { after } : {}) })
    out.push(...page)
    if (page.length < limit) return out
    const last = page[page.length - 1]!
    after = { ts: last.ts, id: last.id }
  }
}

export function decisionLogContract(name: string, create: () => Promise<StoreHandle>, opts: { skip?: string | false } = {}): void {
  describe(`DecisionRepo contract: ${name}`, { skip: opts.skip ?? false }, () => {
    const withStore = (fn: (store: Store) => Promise<void>) => async () => {
      const h = await create()
      try {
        await fn(h.store)
      } finally {
        await h.cleanup()
      }
    }

    test(
      'a record reads back as written; a retried batch is stored once',
      withStore(async (store) => {
        const batch = [
          record({ traceId: 'a'.repeat(32), params: { amount: 5, note: '[REDACTED]' } }),
          record({
            type: 'token.refused',
            decision: 'refused',
            enforced: null,
            agentId: null,
            tenant: null,
            reasons: [],
            policyVersion: null,
            policyIds: null,
            risk: null,
            latencyMs: null,
            params: null,
            error: 'token expired',
          }),
        ]
        assert.equal(await store.decisions.append(batch), 2)
        assert.equal(await store.decisions.append(batch), 0)
        // A batch that overlaps one already stored keeps only its new records.
        const third = record()
        assert.equal(await store.decisions.append([batch[0]!, third]), 1)
        const rows = await store.decisions.query({ limit: 10 })
        assert.deepEqual(rows, [third, batch[1], batch[0]])
      }),
    )

    test(
      'filters page newest first from the cursor, without gaps or repeats',
      withStore(async (store) => {
        const all: DecisionRecord[] = []
        for (let i = 0; i < 60; i++) {
          all.push(
            record({
              tenant: i % 3 === 0 ? 'other' : 'acme',
              agentId: i % 2 === 0 ? 'bot' : 'crawler',
              tool: i % 5 === 0 ? 'payments.transfer' : 'crm.read',
              // A kind PostgreSQL's queries may not write into their text (Dialect.decisionKinds) on a few.
              decision: i % 4 === 0 ? 'deny' : i % 10 === 1 ? "ask'n-wait" : 'allow',
              enforced: i % 7 !== 0,
              // Several records in the same millisecond: the id orders them.
              ts: T0 + 1_000_000 + Math.floor(i / 3),
            }),
          )
        }
        await store.decisions.append(all.slice(0, 31))
        await store.decisions.append(all.slice(31))
        const newestFirst = (rs: DecisionRecord[]) => [...rs].sort((a, b) => b.ts - a.ts || (a.id < b.id ? 1 : -1))
        const cases: Array<[Omit<DecisionQuery, 'limit'>, (r: DecisionRecord) => boolean]> = [
          [{}, () => true],
          [{ tenant: 'acme' }, (r) => r.tenant === 'acme'],
          [{ tenant: 'acme', agentId: 'bot' }, (r) => r.tenant === 'acme' && r.agentId === 'bot'],
          [{ tenant: 'acme', tool: 'payments.transfer' }, (r) => r.tenant === 'acme' && r.tool === 'payments.transfer'],
          [{ tenant: 'acme', decision: 'deny', enforced: false }, (r) => r.tenant === 'acme' && r.decision === 'deny' && r.enforced === false],
          [
            { tenant: 'acme', agentId: 'crawler', tool: 'crm.read', decision: 'allow', enforced: true },
            (r) => r.tenant === 'acme' && r.agentId === 'crawler' && r.tool === 'crm.read' && r.decision === 'allow' && r.enforced === true,
          ],
          [{ agentId: 'bot', decision: 'deny' }, (r) => r.agentId === 'bot' && r.decision === 'deny'],
          [{ decision: 'deny' }, (r) => r.decision === 'deny'],
          [{ tenant: 'acme', decision: "ask'n-wait" }, (r) => r.tenant === 'acme' && r.decision === "ask'n-wait"],
          [{ tenant: 'acme', since: T0 + 1_000_005, until: T0 + 1_000_015 }, (r) => r.tenant === 'acme' && r.ts >= T0 + 1_000_005 && r.ts < T0 + 1_000_015],
        ]
        for (const [q, keep] of cases) {
          const want = newestFirst(all.filter(keep))
          assert.ok(want.length > 0, JSON.stringify(q))
          for (const limit of [1, 4, 100])
            assert.deepEqual(
              (await allPages(store, q, limit)).map((r) => r.id),
              want.map((r) => r.id),
              `${JSON.stringify(q)} limit ${limit}`,
            )
        }
      }),
    )

    test(
      'retention deletes only records older than the cutoff, oldest first and in bounded chunks',
      withStore(async (store) => {
        const old = Array.from({ length: 25 }, (_, i) => record({ ts: T0 + i }))
        const young = Array.from({ length: 5 }, (_, i) => record({ ts: T0 + 100_000 + i }))
        await store.decisions.append([...young, ...old])
        assert.equal(await store.decisions.prune(T0 + 100_000, 10), 10)
        const left = await store.decisions.query({ limit: 100 })
        assert.equal(left.length, 20)
        assert.deepEqual(
          left.slice(-1).map((r) => r.ts),
          [T0 + 10],
          'the oldest went first',
        )
        assert.equal(await store.decisions.prune(T0 + 100_000, 100), 15)
        assert.equal(await store.decisions.prune(T0 + 100_000, 100), 0)
        assert.deepEqual(
          (await store.decisions.query({ limit: 100 })).map((r) => r.id),
          [...young].reverse().map((r) => r.id),
        )
      }),
    )
  })
}
