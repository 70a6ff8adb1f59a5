import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { Redis } from 'ioredis'
import { activatePolicy, authorize, eventually, freePort, metricValue, startGatewayEnv, TEST_POLICY, type GatewayEnv } from '../../helpers/gateway-env.js'
import { REDIS_URL, skipWithoutRedis } from '../../helpers/services.js'

const READ = { action: { tool: 'crm.read' } }
const WRITE = { action: { tool: 'crm.update' } }
const HIGH = { action: { tool: 'payments.transfer', params: { amount: 10 } } }

const noRedis = await skipWithoutRedis()

describe('Redis outage: per action class', () => {
  let env: GatewayEnv
  let deadRedis: string
  const tokens: string[] = []
  let cred: { client_id: string; client_secret: string }

  before(async () => {
    env = await startGatewayEnv()
    cred = await env.agent('outage-bot', ['crm.read', 'crm.update', 'payments.transfer'])
    await activatePolicy(env, TEST_POLICY)
    // A port where nothing listens: every Redis command fails at once.
    deadRedis = `redis://127.0.0.1:${await freePort()}`
  })
  after(async () => { await env?.close() })

  const fresh = async (): Promise<string> => {
    const t = await env.token(cred)
    tokens.push(t)
    return t
  }

  test('closed by default: every action is denied, counted and audited as degraded', async () => {
    const gw = await env.startGateway({ redisUrl: deadRedis })
    try {
      const t = await fresh()
      const before = await metricValue(gw.url, 'aegis_degraded_decisions_total', { outcome: 'closed' })
      for (const call of [READ, WRITE, HIGH]) {
        const r = await authorize(gw.url, t, call)
        assert.equal(r.status, 200)
        assert.equal(r.body.decision, 'deny', JSON.stringify(r.body))
        assert.equal(r.body.enforced, true)
        assert.match(String((r.body.reasons as string[])[0]), /^degraded:/)
      }
      assert.equal(await metricValue(gw.url, 'aegis_degraded_decisions_total', { outcome: 'closed' }), before + 3)
    } finally {
      await gw.close()
    }
  })

  test('redisOutageReads=open lets reads through (counted as open), never writes or high-risk actions', async () => {
    const gw = await env.startGateway({ redisUrl: deadRedis, gateway: { redisOutageReads: 'open' } })
    try {
      const t = await fresh()
      const read = await authorize(gw.url, t, READ)
      assert.equal(read.body.decision, 'allow', JSON.stringify(read.body))
      assert.ok((read.body.reasons as string[]).some((x) => x.startsWith('degraded:redis_unavailable')))
      assert.equal(await metricValue(gw.url, 'aegis_degraded_decisions_total', { outcome: 'open' }), 1)
      assert.equal((await authorize(gw.url, t, WRITE)).body.decision, 'deny')
      assert.equal((await authorize(gw.url, t, HIGH)).body.decision, 'deny')
    } finally {
      await gw.close()
    }
  })

  test('CLIENT PAUSE on a live Redis: high-risk fails closed, and recovers after', { skip: noRedis }, async () => {
    const gw = await env.startGateway({ redisUrl: REDIS_URL }, { tuning: { redisHealthIntervalMs: 50, redisCommandTimeoutMs: 200, feedChannel: `x${Date.now()}:aegis:feed`, feedHashKey: `x${Date.now()}:aegis:revocations` } })
    const admin = new Redis(REDIS_URL)
    try {
      const t1 = await fresh()
      assert.equal((await authorize(gw.url, t1, HIGH)).body.decision, 'allow')
      await admin.call('CLIENT', 'PAUSE', '1000', 'ALL')
      const t2 = await fresh()
      const r = await authorize(gw.url, t2, HIGH)
      assert.equal(r.body.decision, 'deny')
      assert.match(String((r.body.reasons as string[])[0]), /^degraded:/)
      await admin.call('CLIENT', 'UNPAUSE')
      const t3 = await fresh()
      await eventually(async () => (await authorize(gw.url, t3, READ)).body.decision === 'allow')
      assert.equal((await authorize(gw.url, t3, HIGH)).body.decision, 'allow')
    } finally {
      await admin.call('CLIENT', 'UNPAUSE').catch(() => {})
      admin.disconnect()
      await gw.close()
    }
  })
})

describe('feed disconnected beyond gateway.feedStaleSeconds', () => {
  let env: GatewayEnv
  before(async () => { env = await startGatewayEnv() })
  after(async () => { await env?.close() })

  test('high-risk actions fail closed; others keep working on the last list', async () => {
    const cred = await env.agent('stale-bot', ['crm.read', 'payments.transfer'])
    await activatePolicy(env, TEST_POLICY)
    const gw = await env.startGateway({ gateway: { feedStaleSeconds: 1 } })
    try {
      const tokens = [await env.token(cred), await env.token(cred)]
      await eventually(async () => (await authorize(gw.url, tokens[0]!, READ)).body.policy_version !== 'strict')
      await env.cp.close()
      await eventually(async () => !((await (await fetch(`${gw.url}/healthz`)).json()) as { feed: { connected: boolean } }).feed.connected)
      await new Promise((r) => setTimeout(r, 1_200))
      const h = await (await fetch(`${gw.url}/healthz`)).json() as { feed: { stale: boolean } }
      assert.equal(h.feed.stale, true)
      const high = await authorize(gw.url, tokens[1]!, HIGH)
      assert.equal(high.body.decision, 'deny')
      assert.match(String((high.body.reasons as string[])[0]), /^degraded:feed_stale/)
      assert.equal((await authorize(gw.url, tokens[0]!, READ)).body.decision, 'allow')
      assert.ok(await metricValue(gw.url, 'aegis_feed_lag_seconds') > 0)
    } finally {
      await gw.close()
    }
  })
})
