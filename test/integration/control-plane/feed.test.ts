import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { Redis } from 'ioredis'
import { RedisFeedPublisher, feedKeys } from '../../../src/control-plane/feed/index.js'
import { silentLogger } from '../../../src/observability/logger.js'
import type { FeedEvent, FeedSnapshot } from '../../../src/control-plane/feed/events.js'
import { REDIS_URL, freshPostgresSchema, redisPrefix, skipWithoutPostgres, skipWithoutRedis } from '../../helpers/services.js'
import { admin, seedAgent, startControlPlane, type Harness } from './harness.js'
import { followSse } from './sse.js'
import { ControlPlaneClient } from '../../../src/gateway/control-plane-client.js'
import { fetchPagedSnapshot } from '../../../src/gateway/feed/paged-snapshot.js'
import { parseAgentEntry, parseRevocationEntry } from '../../../src/gateway/feed/parse.js'

describe('revocation feed over server-sent events', () => {
  let h: Harness
  before(async () => {
    h = await startControlPlane()
    await seedAgent(h)
  })
  after(async () => {
    await h.close()
  })

  test('the stream needs a global gateway or admin token', async () => {
    const none = await fetch(`${h.url}/admin/v1/revocations/stream`)
    assert.equal(none.status, 401)
    await none.text()
    const tenantAdmin = await admin(h, h.adminToken, 'POST', '/admin-tokens', { tenant: 'acme', role: 'admin' })
    const scoped = await followSse(`${h.url}/admin/v1/revocations/stream`, tenantAdmin.body.token)
    assert.equal(scoped.status, 403)
    scoped.close()
  })

  test('a follower gets the snapshot first, then each revocation with its seq as id, and agent changes', async () => {
    const before = await admin(h, h.adminToken, 'POST', '/revocations', { type: 'jti', value: 'jti-before-connect', reason: 'test' })
    assert.equal(before.status, 201)
    const sse = await followSse(`${h.url}/admin/v1/revocations/stream`, h.gatewayToken)
    try {
      assert.equal(sse.status, 200)
      const snap = await sse.next((e) => e.event === 'snapshot')
      const snapshot = JSON.parse(snap.data) as FeedSnapshot
      assert.ok(snapshot.revocations.some((r) => r.value === 'jti-before-connect'))
      assert.equal(snapshot.seq, before.body.seq)
      assert.ok(snapshot.agents.some((a) => a.agentId === 'billing-bot' && a.tenant === 'acme' && typeof a.capabilityHash === 'string'))

      const r = await admin(h, h.adminToken, 'POST', '/revocations', { type: 'agent', value: 'billing-bot', tenant: 'acme', reason: 'rotated' })
      assert.equal(r.status, 201)
      const ev = await sse.next((e) => e.event === 'revocation' && e.id === String(r.body.seq))
      const event = JSON.parse(ev.data) as FeedEvent
      assert.equal(event.kind, 'revocation')
      assert.ok(event.kind === 'revocation' && event.revocation.value === 'billing-bot' && event.revocation.type === 'agent')

      const p = await admin(h, h.adminToken, 'PATCH', '/tenants/acme/agents/billing-bot', { capabilities: ['crm.read'] })
      const agentEv = await sse.next((e) => e.event === 'agent')
      const ae = JSON.parse(agentEv.data) as FeedEvent
      assert.ok(ae.kind === 'agent' && ae.agent.capabilityHash === p.body.capability_hash)
    } finally {
      sse.close()
    }
  })

  test('snapshot endpoint, gateway acks, applied_by/pending and lag', async () => {
    const snap = await admin(h, h.gatewayToken, 'GET', '/feed/snapshot')
    assert.equal(snap.status, 200)
    assert.ok(Array.isArray(snap.body.revocations))
    const last = snap.body.seq as number
    const ack = await admin(h, h.gatewayToken, 'POST', '/gateways/acks', { gateway_id: 'gw-1', seq: last })
    assert.equal(ack.status, 204)
    assert.equal((await admin(h, h.gatewayToken, 'POST', '/gateways/acks', { gateway_id: 'gw-2', seq: 0 })).status, 204)
    assert.equal((await admin(h, h.gatewayToken, 'POST', '/gateways/acks', { gateway_id: 'bad id!', seq: 1 })).status, 400)
    assert.equal((await admin(h, h.gatewayToken, 'POST', '/gateways/acks', { gateway_id: 'gw-3' })).status, 400)
    const one = await admin(h, h.adminToken, 'GET', `/revocations/${last}`)
    assert.equal(one.status, 200)
    assert.deepEqual(one.body.applied_by, ['gw-1'])
    assert.deepEqual(one.body.pending, ['gw-2'])
    const gws = await admin(h, h.adminToken, 'GET', '/gateways')
    assert.equal(gws.status, 200)
    const g2 = gws.body.gateways.find((g: { gateway_id: string }) => g.gateway_id === 'gw-2')
    const g1 = gws.body.gateways.find((g: { gateway_id: string }) => g.gateway_id === 'gw-1')
    assert.equal(g1.lag, 0)
    assert.equal(g2.lag, last)
    assert.ok(g2.lag_seconds >= 0)
    assert.equal((await admin(h, h.adminToken, 'GET', '/revocations/999999')).status, 404)
  })

  test('v=3 pages carry tuples, on the stream and the NDJSON snapshot, that a gateway reads as the v=2 objects without their reason', async () => {
    const r = await admin(h, h.adminToken, 'POST', '/revocations', { type: 'jti', value: 'jti-tuple-page', reason: 'tuple test' })
    assert.equal(r.status, 201)
    const pagesOf = async (v: '2' | '3'): Promise<{ revocations: unknown[]; agents: unknown[] }> => {
      const sse = await followSse(`${h.url}/admin/v1/revocations/stream?v=${v}`, h.gatewayToken)
      try {
        await sse.next((x) => x.event === 'snapshot-end')
        const out = { revocations: [] as unknown[], agents: [] as unknown[] }
        for (const e of sse.events) {
          if (e.event === 'snapshot-revocations') out.revocations.push(...(JSON.parse(e.data) as unknown[]))
          if (e.event === 'snapshot-agents') out.agents.push(...(JSON.parse(e.data) as unknown[]))
        }
        return out
      } finally {
        sse.close()
      }
    }
    const objects = await pagesOf('2')
    const tuples = await pagesOf('3')
    assert.ok(tuples.revocations.length > 0 && tuples.revocations.every(Array.isArray))
    assert.ok(tuples.agents.length > 0 && tuples.agents.every(Array.isArray))
    const withoutReason = (x: unknown): unknown => ({ ...(parseRevocationEntry(x) as object), reason: null })
    assert.deepEqual(tuples.revocations.map(parseRevocationEntry), objects.revocations.map(withoutReason))
    assert.deepEqual(tuples.agents.map(parseAgentEntry), objects.agents.map(parseAgentEntry))
    assert.ok(objects.revocations.some((x) => (x as { reason: string }).reason === 'tuple test'))

    const ndjson = await fetch(`${h.url}/admin/v1/feed/snapshot?paged=true&v=3`, { headers: { authorization: `Bearer ${h.gatewayToken}` } })
    assert.match(ndjson.headers.get('content-type') ?? '', /ndjson/)
    const lines = (await ndjson.text())
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>)
    assert.deepEqual(
      lines.flatMap((l) => (l.revocations as unknown[] | undefined) ?? []),
      tuples.revocations,
    )
    const loaded = await fetchPagedSnapshot(new ControlPlaneClient(h.url, h.gatewayToken))
    assert.ok(loaded?.revocations.some((x) => x.value === 'jti-tuple-page' && x.seq === r.body.seq))
  })
})

const skipRedisPg = (await skipWithoutPostgres()) || (await skipWithoutRedis())

describe('feed shutdown', () => {
  test('closing the control plane ends open streams', async () => {
    const h = await startControlPlane()
    const res = await fetch(`${h.url}/admin/v1/revocations/stream`, { headers: { authorization: `Bearer ${h.gatewayToken}` } })
    assert.equal(res.status, 200)
    const body = res.text().catch(() => 'aborted')
    await h.close()
    const text = await body
    assert.ok(text === 'aborted' || text.startsWith('event: snapshot'))
  })
})

describe('revocation feed over Redis between two control planes on one PostgreSQL', () => {
  test("a revocation made on one control plane reaches the other's SSE stream and the Redis hash", { skip: skipRedisPg }, async () => {
    const schema = await freshPostgresSchema()
    const prefix = redisPrefix()
    const logger = silentLogger()
    const feedA = await RedisFeedPublisher.open({ url: REDIS_URL, logger, prefix })
    const feedB = await RedisFeedPublisher.open({ url: REDIS_URL, logger, prefix })
    const redis = new Redis(REDIS_URL)
    let a: Harness | undefined
    let b: Harness | undefined
    try {
      a = await startControlPlane({ databaseUrl: schema.url, overrides: { redisUrl: REDIS_URL }, deps: { feed: feedA } })
      const kek = a.config.kek!
      b = await startControlPlane({
        databaseUrl: schema.url,
        overrides: { redisUrl: REDIS_URL, kek, adminToken: a.adminToken, gatewayToken: a.gatewayToken },
        deps: { feed: feedB },
      })
      const sse = await followSse(`${b.url}/admin/v1/revocations/stream`, b.gatewayToken)
      try {
        await sse.next((e) => e.event === 'snapshot')
        const r = await admin(a, a.adminToken, 'POST', '/revocations', { type: 'tenant', value: 'acme', reason: 'incident' })
        assert.equal(r.status, 201)
        const ev = await sse.next((e) => e.event === 'revocation' && e.id === String(r.body.seq))
        assert.equal((JSON.parse(ev.data) as FeedEvent).kind, 'revocation')
        const stored = await redis.hget(feedKeys(prefix).revocations, String(r.body.seq))
        assert.ok(stored)
        assert.equal(JSON.parse(stored).value, 'acme')
        // A restarting control plane rewrites the hash to exactly the live entries.
        await feedA.syncRevocations([], JSON.parse(stored).expiresAt + 1)
        assert.equal(await redis.hget(feedKeys(prefix).revocations, String(r.body.seq)), null)
        await feedA.syncRevocations(await a.deps.store.revocations.listActive(Date.now()), Date.now())
        assert.ok(await redis.hget(feedKeys(prefix).revocations, String(r.body.seq)))
      } finally {
        sse.close()
      }
    } finally {
      await b?.close()
      await a?.close()
      await feedA.close()
      await feedB.close()
      await redis.del(feedKeys(prefix).revocations)
      redis.disconnect()
      await schema.drop()
    }
  })
})
