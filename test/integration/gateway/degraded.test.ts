import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { Redis } from 'ioredis'
import { MemoryDecisionSink } from '../../../src/gateway/index.js'
import { activatePolicy, authorize, eventually, freePort, metricValue, startGatewayEnv, TEST_POLICY, type GatewayEnv } from '../../helpers/gateway-env.js'
import { REDIS_URL, skipWithoutRedis } from '../../helpers/services.js'

const READ = { action: { tool: 'crm.read' } }
const WRITE = { action: { tool: 'crm.update' } }
const HIGH = { action: { tool: 'payments.transfer', params: { amount: 10 } } }
/** Above the permit's limit: the policy denies it, whatever is out. */
const DENIED_HIGH = { action: { tool: 'payments.transfer', params: { amount: 60_000 } } }

const noRedis = await skipWithoutRedis()

/** An outage answers as an outage: 503 temporarily_unavailable, Retry-After, the degraded reason as description. */
function assertUnavailable(r: { status: number; body: Record<string, unknown>; headers: Headers }, reason: RegExp): void {
  assert.equal(r.status, 503, JSON.stringify(r.body))
  assert.equal(r.body.error, 'temporarily_unavailable')
  assert.match(String(r.body.error_description), reason)
  assert.ok(Number(r.headers.get('retry-after')) >= 1, `Retry-After: ${r.headers.get('retry-after')}`)
  assert.equal(r.body.decision, undefined, 'not a policy decision')
}

describe('Redis outage: calls that need nothing from Redis are decided, the others answer 503', () => {
  let env: GatewayEnv
  let deadRedis: string
  let cred: { client_id: string; client_secret: string }

  before(async () => {
    env = await startGatewayEnv()
    cred = await env.agent('outage-bot', ['crm.read', 'crm.update', 'payments.transfer'])
    await activatePolicy(env, TEST_POLICY)
    // A port where nothing listens: every Redis command fails at once.
    deadRedis = `redis://127.0.0.1:${await freePort()}`
  })
  after(async () => {
    await env?.close()
  })

  test(
    'deny list fresh (control plane polled): reads and writes are decided as usual; a high-risk call answers 503 with Retry-After, counted and ' +
      'audited as degraded',
    async () => {
      const sink = new MemoryDecisionSink()
      const gw = await env.startGateway({ redisUrl: deadRedis }, { decisions: sink })
      try {
        const t = await env.token(cred)
        for (const call of [READ, WRITE]) {
          const r = await authorize(gw.url, t, call)
          assert.equal(r.status, 200, JSON.stringify(r.body))
          assert.equal(r.body.decision, 'allow')
          assert.ok(!(r.body.reasons as string[]).some((x) => x.startsWith('degraded:')), 'nothing degraded about it')
        }
        const ready = await fetch(`${gw.url}/readyz`)
        assert.equal(ready.status, 200, 'a fresh deny list and keys: ready, Redis or not')
        assert.deepEqual(((await ready.json()) as { redis: unknown }).redis, { healthy: false })
        const before = await metricValue(gw.url, 'aegis_degraded_decisions_total', { outcome: 'closed' })
        const high = await authorize(gw.url, t, HIGH)
        assertUnavailable(high, /^degraded:redis_unavailable/)
        assert.equal(await metricValue(gw.url, 'aegis_degraded_decisions_total', { outcome: 'closed' }), before + 1)
        const audited = sink.events.filter((e) => e.type === 'decision.unavailable')
        assert.equal(audited.length, 1)
        assert.equal(audited[0]!.degraded, 'closed')
        assert.equal(audited[0]!.tool, 'payments.transfer')
        assert.match(String(audited[0]!.reasons?.[0]), /^degraded:redis_unavailable/)
        // A policy deny needs nothing from Redis: it stands as a decision.
        const denied = await authorize(gw.url, await env.token(cred), DENIED_HIGH)
        assert.equal(denied.status, 200, JSON.stringify(denied.body))
        assert.equal(denied.body.decision, 'deny')
        // A dry run claims nothing: decided, not enforced.
        const dry = await authorize(gw.url, t, HIGH, { 'aegis-dry-run': '1' })
        assert.equal(dry.status, 200)
        assert.equal(dry.body.decision, 'allow')
        assert.equal(dry.body.enforced, false)
      } finally {
        await gw.close()
      }
    },
  )

  test('CLIENT PAUSE on a live Redis: a high-risk call answers 503, and is decided again after', { skip: noRedis }, async () => {
    const gw = await env.startGateway(
      { redisUrl: REDIS_URL },
      {
        tuning: {
          redisHealthIntervalMs: 50,
          redisCommandTimeoutMs: 200,
          feedChannel: `x${Date.now()}:aegis:feed`,
          feedHashKey: `x${Date.now()}:aegis:revocations`,
        },
      },
    )
    const admin = new Redis(REDIS_URL)
    try {
      const t1 = await env.token(cred)
      assert.equal((await authorize(gw.url, t1, HIGH)).body.decision, 'allow')
      await admin.call('CLIENT', 'PAUSE', '1000', 'ALL')
      const t2 = await env.token(cred)
      assertUnavailable(await authorize(gw.url, t2, HIGH), /^degraded:/)
      await admin.call('CLIENT', 'UNPAUSE')
      // A read is decided from the fresh deny list even while Redis is paused, so only a high-risk call
      // (which needs the replay cache) shows that Redis is back: once the health probe has seen it.
      await eventually(async () => (await authorize(gw.url, await env.token(cred), HIGH)).body.decision === 'allow', 10_000, 50)
    } finally {
      await admin.call('CLIENT', 'UNPAUSE').catch(() => {})
      admin.disconnect()
      await gw.close()
    }
  })
})

describe('Redis down and the deny list stale (control plane unreachable as well)', () => {
  let env: GatewayEnv
  before(async () => {
    env = await startGatewayEnv()
  })
  after(async () => {
    await env?.close()
  })

  test('writes and high-risk calls answer 503; reads too by default, and are let through (counted as open) with redisOutageReads=open', async () => {
    const cred = await env.agent('stale-outage-bot', ['crm.read', 'crm.update', 'payments.transfer'])
    await activatePolicy(env, TEST_POLICY)
    const deadRedis = `redis://127.0.0.1:${await freePort()}`
    const closed = await env.startGateway({ redisUrl: deadRedis, gateway: { feedStaleSeconds: 1 } })
    const open = await env.startGateway({ redisUrl: deadRedis, gateway: { feedStaleSeconds: 1, redisOutageReads: 'open' } })
    try {
      const t = await env.token(cred)
      await eventually(
        async () =>
          (await authorize(closed.url, t, READ)).body.policy_version !== 'none' && (await authorize(open.url, t, READ)).body.policy_version !== 'none',
      )
      await env.cp.close()
      await eventually(async () => (await fetch(`${closed.url}/readyz`)).status === 503 && (await fetch(`${open.url}/readyz`)).status === 503)
      const body = (await (await fetch(`${closed.url}/readyz`)).json()) as { reasons: string[] }
      assert.match(body.reasons.join(' '), /feed_stale/)
      for (const call of [READ, WRITE]) assertUnavailable(await authorize(closed.url, t, call), /^degraded:redis_unavailable/)
      assertUnavailable(await authorize(closed.url, t, HIGH), /^degraded:/)
      const read = await authorize(open.url, t, READ)
      assert.equal(read.status, 200)
      assert.equal(read.body.decision, 'allow', JSON.stringify(read.body))
      assert.ok((read.body.reasons as string[]).some((x) => x.startsWith('degraded:redis_unavailable')))
      assert.equal(await metricValue(open.url, 'aegis_degraded_decisions_total', { outcome: 'open' }), 1)
      assertUnavailable(await authorize(open.url, t, WRITE), /^degraded:redis_unavailable/)
      assertUnavailable(await authorize(open.url, t, HIGH), /^degraded:/)
    } finally {
      await closed.close()
      await open.close()
    }
  })
})

describe('feed disconnected beyond gateway.feedStaleSeconds', () => {
  let env: GatewayEnv
  before(async () => {
    env = await startGatewayEnv()
  })
  after(async () => {
    await env?.close()
  })

  test('high-risk actions answer 503 (feed_stale) and the gateway is not ready; others keep working on the last list', async () => {
    const cred = await env.agent('stale-bot', ['crm.read', 'payments.transfer'])
    await activatePolicy(env, TEST_POLICY)
    const gw = await env.startGateway({ gateway: { feedStaleSeconds: 1 } })
    try {
      const tokens = [await env.token(cred), await env.token(cred)]
      await eventually(async () => (await authorize(gw.url, tokens[0]!, READ)).body.policy_version !== 'none')
      assert.equal((await fetch(`${gw.url}/readyz`)).status, 200)
      await env.cp.close()
      await eventually(async () => !((await (await fetch(`${gw.url}/healthz`)).json()) as { feed: { connected: boolean } }).feed.connected)
      await new Promise((r) => setTimeout(r, 1_200))
      const h = (await (await fetch(`${gw.url}/healthz`)).json()) as { feed: { stale: boolean } }
      assert.equal(h.feed.stale, true)
      const ready = await fetch(`${gw.url}/readyz`)
      assert.equal(ready.status, 503)
      assert.match(((await ready.json()) as { reasons: string[] }).reasons.join(' '), /^feed_stale/)
      assert.equal((await fetch(`${gw.url}/livez`)).status, 200, 'alive all the same: a restart would not help')
      assertUnavailable(await authorize(gw.url, tokens[1]!, HIGH), /^degraded:feed_stale/)
      assert.equal((await authorize(gw.url, tokens[0]!, READ)).body.decision, 'allow')
      assert.ok((await metricValue(gw.url, 'aegis_feed_lag_seconds')) > 0)
    } finally {
      await gw.close()
    }
  })
})
