/**
 * 2,000 agents start at the same instant. Their refreshes must spread over
 * the [60 %, 85 %] window, and the token server must see exactly one request
 * per agent per token lifetime. Simulated time on the agents' side (manual
 * clock + scheduler), a real control plane on the other: each source has
 * its own bootstrap credential, and the control plane's own `token.issued`
 * audit events are counted per client_id.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ClientCredentialsSource, type FetchLike } from '../../../src/sdk/index.js'
import { ManualClock, ManualScheduler, seededRandom, waitUntil } from './helpers/manual-time.js'
import { startAegis } from './helpers/roles.js'

const N = 2000
const LIFETIME_S = 600
const L = LIFETIME_S * 1000
const STEP = 5000

test('refresh storm: 2,000 sources created together refresh spread over the window, one request per source per cycle', async () => {
  const clock = new ManualClock(1_800_000_000_000)
  const scheduler = new ManualScheduler(clock)
  const aegis = await startAegis({ overrides: { tokens: { defaultTtlSeconds: LIFETIME_S } } })
  const sources: ClientCredentialsSource[] = []
  try {
    const creds = []
    for (let b = 0; b < N; b += 100) creds.push(...(await Promise.all(Array.from({ length: Math.min(100, N - b) }, () => aegis.credential()))))
    const tokenEndpoint = `${aegis.issuer}/oauth2/token`
    let started = 0
    let settled = 0
    const failures: string[] = []
    const sent: number[][] = Array.from({ length: N }, () => [])
    const refreshedAt: number[][] = Array.from({ length: N }, () => [])
    for (let i = 0; i < N; i++) {
      const counting: FetchLike = (input, init) => {
        started++
        sent[i]!.push(clock.now())
        return fetch(input, init)
      }
      sources.push(
        new ClientCredentialsSource({
          issuer: aegis.issuer,
          tokenEndpoint,
          clientId: creds[i]!.client_id,
          clientSecret: creds[i]!.client_secret,
          clock,
          scheduler,
          random: seededRandom(1000 + i),
          fetch: counting,
          onRefresh: (info) => {
            settled++
            if (info.outcome === 'success') refreshedAt[i]!.push(info.startedAt)
            else failures.push(`source ${i} attempt ${info.attempt} at ${info.startedAt}: ${info.outcome} ${info.code} ${info.status}`)
          },
        }),
      )
    }
    const t0 = clock.now()
    for (let b = 0; b < N; b += 250) await Promise.all(sources.slice(b, b + 250).map((s) => s.getToken()))
    assert.equal(started, N)

    // Two full lifetimes of simulated time.
    while (clock.now() < t0 + 2 * L) {
      scheduler.fireUntil(clock.now() + STEP)
      await waitUntil(() => settled === started, 'in-flight refreshes')
    }

    assert.deepEqual(failures, [], 'every token request succeeded at the first attempt')
    // The control plane issued exactly what the sources asked for, per source.
    const perClient = new Map<string, number>()
    let total = 0
    for (let cursor: number | undefined; ; ) {
      const page = await aegis.cp.deps.store.audit.query({ type: 'token.issued', limit: 1000, ...(cursor !== undefined ? { cursor } : {}) })
      for (const e of page) {
        const id = String(e.data.client_id)
        perClient.set(id, (perClient.get(id) ?? 0) + 1)
        total++
      }
      if (page.length < 1000) break
      cursor = page[page.length - 1]!.id
    }
    assert.equal(total, started)
    for (let i = 0; i < N; i++) assert.equal(perClient.get(creds[i]!.client_id), sent[i]!.length, `source ${i}`)

    // One request per source per cycle: consecutive requests are always a
    // refresh window apart, never closer (no duplicate) and never further
    // (no missed refresh); every source refreshed at least twice.
    for (let i = 0; i < N; i++) {
      const times = refreshedAt[i]!
      assert.equal(times.length, sent[i]!.length, `source ${i}: one request per refresh`)
      assert.ok(times.length >= 3, `source ${i} refreshed ${times.length - 1} times`)
      assert.equal(times[0], t0)
      for (let k = 1; k < times.length; k++) {
        const gap = times[k]! - times[k - 1]!
        assert.ok(gap >= 0.6 * L && gap <= 0.85 * L, `source ${i} refresh ${k} came ${gap / L} of a lifetime after the previous one`)
      }
    }

    // Spread of the first refresh over the window: ten equal buckets, each
    // near N/10 (binomial sd ≈ 13), and no second with more than a handful.
    const first = refreshedAt.map((t) => (t[1]! - t0) / L)
    const buckets = new Array<number>(10).fill(0)
    for (const f of first) buckets[Math.min(9, Math.floor(((f - 0.6) / 0.25) * 10))]!++
    for (const [k, n] of buckets.entries()) assert.ok(n >= 130 && n <= 270, `bucket ${k} holds ${n} of ${N}: ${buckets.join(',')}`)
    const perSecond = new Map<number, number>()
    for (const t of refreshedAt) perSecond.set(Math.floor((t[1]! - t0) / 1000), (perSecond.get(Math.floor((t[1]! - t0) / 1000)) ?? 0) + 1)
    const busiest = Math.max(...perSecond.values())
    assert.ok(busiest <= 40, `busiest second had ${busiest} refreshes (uniform ≈ ${Math.round(N / 150)})`)
    assert.ok(perSecond.size >= 140, `refreshes fell in only ${perSecond.size} distinct seconds of the 150-second window`)
  } finally {
    for (const s of sources) s.close()
    await aegis.close()
  }
})
