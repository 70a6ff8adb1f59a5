import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { isFeedHub } from '../../../src/control-plane/feed/index.js'
import type { FeedEvent } from '../../../src/control-plane/feed/events.js'
import { CedarCompiler } from '../../../src/policy/cedar/engine.js'
import type { Decision, PolicyRequest } from '../../../src/policy/types.js'
import { admin, seedAgent, startControlPlane, type Harness } from '../control-plane/harness.js'

const PAYMENTS = readFileSync('policies/templates/payments/policy.cedar', 'utf8')
/** The candidate lowers the approval threshold from 1000 to 500. */
const PAYMENTS_500 = PAYMENTS.replace('context.params.amount > 1000 }', 'context.params.amount > 500 }')

describe('policy admin API', () => {
  let h: Harness
  let url: string
  const events: FeedEvent[] = []
  let unsubscribe = (): void => {}
  let otherAdmin: string

  const call = (token: string, method: string, path: string, body?: unknown) => admin({ url }, token, method, path, body)

  before(async () => {
    h = await startControlPlane()
    await seedAgent(h, { tenant: 'acme' })
    await seedAgent(h, { tenant: 'globex', agent: 'globex-bot' })
    const t = await admin(h, h.adminToken, 'POST', '/admin-tokens', { tenant: 'globex', role: 'admin', name: 'globex admin' })
    otherAdmin = t.body.token
    url = h.url
    assert.ok(isFeedHub(h.deps.feed))
    unsubscribe = h.deps.feed.subscribe((e) => events.push(e))
  })
  after(async () => {
    unsubscribe()
    await h.close()
  })

  let v1 = ''
  let v2 = ''

  test('upload validates and answers 201 with id, version and mode', async () => {
    const r = await call(h.adminToken, 'POST', '/tenants/acme/policies', { version: '2026-11-28.1', cedar: PAYMENTS, mode: 'enforce' })
    assert.equal(r.status, 201, r.text)
    assert.match(r.body.id, /^pol_/)
    assert.equal(r.body.version, '2026-11-28.1')
    assert.equal(r.body.mode, 'enforce')
    assert.equal(r.body.status, 'inactive')
    v1 = r.body.id
    const created = (await h.events('policy.created')).filter((e) => e.subject === v1)
    assert.equal(created.length, 1)
    assert.equal(created[0]!.tenant, 'acme')
  })

  test('bad Cedar is a 400 naming line and column, and stores nothing', async () => {
    const before = (await call(h.adminToken, 'GET', '/tenants/acme/policies')).body.policies.length
    const r = await call(h.adminToken, 'POST', '/tenants/acme/policies', {
      version: 'bad',
      cedar: 'permit(principal, action, resource);\npermit(principal, action, resource) when { principal.scope == 1 };',
      mode: 'enforce',
    })
    assert.equal(r.status, 400)
    assert.equal(r.body.error, 'invalid_request')
    assert.match(r.body.error_description, /line 2, column 44/)
    const bad2 = await call(h.adminToken, 'POST', '/tenants/acme/policies', {
      version: 'bad2',
      cedar: 'permit(principal, action, resource) when { 1 == };',
      mode: 'enforce',
    })
    assert.equal(bad2.status, 400)
    assert.match(bad2.body.error_description, /line 1, column 49/)
    assert.equal(
      (await call(h.adminToken, 'POST', '/tenants/acme/policies', { version: 'x', cedar: 'permit(principal, action, resource);', mode: 'loud' })).status,
      400,
    )
    assert.equal((await call(h.adminToken, 'GET', '/tenants/acme/policies')).body.policies.length, before)
  })

  test('a 500-policy bundle larger than the default body limit uploads', async () => {
    const { generatePolicyBundle } = await import('../../../bench/policy.js')
    const cedar = generatePolicyBundle(500)
    assert.ok(Buffer.byteLength(cedar) > h.config.limits.bodyBytes)
    const r = await call(h.adminToken, 'POST', '/tenants/acme/policies', { version: 'big-500', cedar, mode: 'shadow' })
    assert.equal(r.status, 201, r.text)
    assert.equal(r.body.policies, 500)
  })

  test('a duplicate version is 409', async () => {
    const r = await call(h.adminToken, 'POST', '/tenants/acme/policies', { version: '2026-11-28.1', cedar: PAYMENTS, mode: 'shadow' })
    assert.equal(r.status, 409)
    assert.equal(r.body.error, 'conflict')
  })

  test('activation makes the version the one tokens carry, publishes it, and rollback re-activates an older one', async () => {
    const a = await call(h.adminToken, 'POST', `/tenants/acme/policies/${v1}/activate`)
    assert.equal(a.status, 200, a.text)
    assert.equal(a.body.status, 'active')
    assert.deepEqual(
      (await h.deps.store.policies.listActive()).filter((b) => b.tenant === 'acme').map((b) => b.version),
      ['2026-11-28.1'],
    )
    const ev = events.filter((e) => e.kind === 'policy').at(-1)
    assert.ok(ev && ev.kind === 'policy')
    assert.equal(ev.policy.tenant, 'acme')
    assert.equal(ev.policy.active?.id, v1)
    assert.equal(ev.policy.active?.cedar, PAYMENTS)

    const up = await call(h.adminToken, 'POST', '/tenants/acme/policies', { version: '2026-11-28.2', cedar: PAYMENTS_500, mode: 'shadow' })
    v2 = up.body.id
    assert.equal((await call(h.adminToken, 'POST', `/tenants/acme/policies/${v2}/activate`)).status, 200)
    const list = await call(h.adminToken, 'GET', '/tenants/acme/policies')
    assert.deepEqual(
      list.body.policies.map((p: { version: string; status: string }) => `${p.version}:${p.status}`),
      ['2026-11-28.1:inactive', 'big-500:inactive', '2026-11-28.2:active'],
    )
    assert.equal(list.body.policies[0].cedar, undefined)

    const back = await call(h.adminToken, 'POST', `/tenants/acme/policies/${v1}/activate`)
    assert.equal(back.status, 200)
    assert.equal((await h.deps.store.policies.listActive()).find((b) => b.tenant === 'acme')?.id, v1)
    const activations = (await h.events('policy.activated')).filter((e) => e.tenant === 'acme')
    assert.equal(activations.length, 3)
    assert.equal(activations[2]!.data.rollback, true)
    assert.equal(activations[2]!.data.previous_version, '2026-11-28.2')
    const full = await call(h.adminToken, 'GET', `/tenants/acme/policies/${v1}`)
    assert.equal(full.body.cedar, PAYMENTS)
  })

  test("a tenant admin cannot see or change another tenant's bundles; a gateway token cannot upload", async () => {
    assert.equal((await call(otherAdmin, 'GET', '/tenants/acme/policies')).status, 403)
    assert.equal((await call(otherAdmin, 'POST', `/tenants/acme/policies/${v2}/activate`)).status, 403)
    assert.equal((await call(h.gatewayToken, 'POST', '/tenants/acme/policies', { version: 'gw', cedar: PAYMENTS })).status, 403)
    assert.equal((await call('nope', 'GET', '/tenants/acme/policies')).status, 401)
    assert.equal((await call(h.adminToken, 'GET', '/tenants/nobody/policies')).status, 404)
    assert.equal((await call(h.adminToken, 'POST', '/tenants/acme/policies/pol_missing/activate')).status, 404)
    assert.equal((await h.deps.store.policies.listActive()).find((b) => b.tenant === 'acme')?.id, v1)
  })

  test('candidate diff on a replayed stream names exactly the calls whose decision changes; promotion waits for review', async () => {
    const cand = await call(h.adminToken, 'POST', `/tenants/acme/policies/${v2}/candidate`)
    assert.equal(cand.status, 200, cand.text)
    assert.equal(cand.body.status, 'candidate')
    const ev = events.filter((e) => e.kind === 'policy').at(-1)
    assert.ok(ev && ev.kind === 'policy')
    assert.equal(ev.policy.candidate?.id, v2)
    assert.equal(ev.policy.active?.id, v1)
    assert.equal((await call(h.adminToken, 'POST', `/tenants/acme/policies/${v1}/candidate`)).status, 409)

    // Replay a stream of calls through both bundles, as a gateway does, and report the pairs.
    const compiler = new CedarCompiler()
    const active = compiler.compile({ id: v1, tenant: 'acme', version: '2026-11-28.1', cedar: PAYMENTS, mode: 'enforce' })
    const candidate = compiler.compile({ id: v2, tenant: 'acme', version: '2026-11-28.2', cedar: PAYMENTS_500, mode: 'shadow' })
    const agents = ['billing-bot', 'refund-bot']
    const samples: Array<Record<string, unknown>> = []
    const expected = new Map<string, number>()
    for (let i = 0; i < 120; i++) {
      const tool = i % 4 === 0 ? 'payments.charge' : 'payments.transfer'
      const params =
        tool === 'payments.charge' ? { amount: 10 + i, card_number: '4111111111111111' } : { amount: 100 + i * 9, currency: 'USD', memo: 'x'.repeat(300) }
      const req: PolicyRequest = {
        principal: { tenant: 'acme', agentId: agents[i % 2]!, clientId: 'c', scopes: ['payments:write'], capabilities: [tool] },
        action: tool,
        resource: null,
        params,
        time: 1_767_225_600,
        clientAddress: null,
        override: false,
      }
      const from: Decision = active.evaluate(req).decision
      const to: Decision = candidate.evaluate(req).decision
      if (from !== to) {
        const key = `${req.principal.agentId}|${tool}|${from}|${to}`
        expected.set(key, (expected.get(key) ?? 0) + 1)
      }
      samples.push({
        tenant: 'acme',
        candidate_version: '2026-11-28.2',
        active_version: '2026-11-28.1',
        agent_id: req.principal.agentId,
        tool,
        params,
        active_decision: from,
        candidate_decision: to,
      })
    }
    assert.ok(expected.size > 0)
    samples.push({
      tenant: 'acme',
      candidate_version: 'stale',
      active_version: '2026-11-28.1',
      agent_id: 'billing-bot',
      tool: 'payments.transfer',
      active_decision: 'allow',
      candidate_decision: 'deny',
    })
    const post = await call(h.gatewayToken, 'POST', '/policy-diffs', { gateway_id: 'gw-1', samples })
    assert.equal(post.status, 202, post.text)
    assert.deepEqual(post.body, { accepted: 120, ignored: 1 })
    assert.equal(
      (await call(h.gatewayToken, 'POST', '/policy-diffs', { gateway_id: 'gw-1', samples: [{ ...samples[0], active_decision: 'maybe' }] })).status,
      400,
    )
    assert.equal((await call(otherAdmin, 'POST', '/policy-diffs', { gateway_id: 'gw-1', samples: [samples[0]] })).status, 403)

    const diff = await call(h.adminToken, 'GET', `/tenants/acme/policies/${v2}/diff`)
    assert.equal(diff.status, 200, diff.text)
    assert.equal(diff.body.samples, 120)
    const got = new Map<string, number>(
      diff.body.changes.map((c: { agent_id: string; tool: string; from: string; to: string; count: number }) => [
        `${c.agent_id}|${c.tool}|${c.from}|${c.to}`,
        c.count,
      ]),
    )
    assert.deepEqual([...got.entries()].sort(), [...expected.entries()].sort())
    assert.equal(
      diff.body.changed,
      [...expected.values()].reduce((a, b) => a + b, 0),
    )
    for (const c of diff.body.changes) {
      assert.ok(c.samples.length > 0 && c.samples.length <= 5)
      for (const s of c.samples) {
        assert.ok(JSON.stringify(s.params).length < 400, 'long strings are cut')
        assert.notEqual(s.params.card_number, '4111111111111111')
      }
    }
    assert.ok(diff.body.unchanged.some((u: { tool: string }) => u.tool === 'payments.charge'))

    const early = await call(h.adminToken, 'POST', `/tenants/acme/policies/${v2}/activate`)
    assert.equal(early.status, 409)
    assert.match(early.body.error_description, /review/)
    assert.equal((await h.deps.store.policies.listActive()).find((b) => b.tenant === 'acme')?.id, v1)

    const reviewed = await call(h.adminToken, 'POST', `/tenants/acme/policies/${v2}/review`)
    assert.equal(reviewed.status, 200)
    assert.equal(typeof reviewed.body.reviewed_at, 'number')
    const promoted = await call(h.adminToken, 'POST', `/tenants/acme/policies/${v2}/activate`)
    assert.equal(promoted.status, 200, promoted.text)
    assert.equal(promoted.body.status, 'active')
    const last = events.filter((e) => e.kind === 'policy').at(-1)
    assert.ok(last && last.kind === 'policy')
    assert.equal(last.policy.active?.id, v2)
    assert.equal(last.policy.candidate, null)
  })

  test('?require_review=true gates a candidate even when no change was sampled; clearing a candidate', async () => {
    const up = await call(h.adminToken, 'POST', '/tenants/acme/policies', { version: '2026-11-28.3', cedar: PAYMENTS, mode: 'enforce' })
    const v3 = up.body.id
    assert.equal((await call(h.adminToken, 'POST', `/tenants/acme/policies/${v3}/candidate`)).status, 200)
    const gated = await call(h.adminToken, 'POST', `/tenants/acme/policies/${v3}/activate?require_review=true`)
    assert.equal(gated.status, 409)
    const cleared = await call(h.adminToken, 'DELETE', `/tenants/acme/policies/${v3}/candidate`)
    assert.equal(cleared.status, 200)
    assert.equal(cleared.body.status, 'inactive')
    // Not a candidate any more: activating is an ordinary (ungated) activation.
    assert.equal((await call(h.adminToken, 'POST', `/tenants/acme/policies/${v3}/activate?require_review=true`)).status, 200)
  })
})
