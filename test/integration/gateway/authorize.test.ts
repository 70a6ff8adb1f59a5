import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { authorize, metricValue, startGatewayEnv, type Credential, type GatewayEnv, type RunningGateway } from '../../helpers/gateway-env.js'
import { MemoryDecisionSink } from '../../../src/gateway/index.js'

describe('POST /v1/authorize against a real control plane (SSE feed)', () => {
  let env: GatewayEnv
  let gw: RunningGateway
  let cred: Credential
  let token: string
  const sink = new MemoryDecisionSink()

  before(async () => {
    env = await startGatewayEnv()
    cred = await env.agent('billing-bot', ['crm.read', 'payments.transfer'])
    gw = await env.startGateway({}, { decisions: sink })
    token = await env.token(cred)
  })
  after(async () => {
    await env.close()
  })

  test('a tool in the manifest is allowed, with the full wire body', async () => {
    const r = await authorize(gw.url, token, { action: { tool: 'crm.read', params: { q: 'acme' } }, resource: 'crm:contacts' })
    assert.equal(r.status, 200)
    assert.deepEqual(r.body, {
      decision: 'allow',
      reasons: ['capability:granted'],
      policy_version: 'none',
      obligations: [],
      params: { q: 'acme' },
      enforced: true,
    })
    const audit = sink.events.at(-1)!
    assert.equal(audit.type, 'decision')
    assert.equal(audit.decision, 'allow')
    assert.equal(audit.agent_id, 'billing-bot')
    assert.equal(audit.tenant, env.tenant)
    assert.ok(!JSON.stringify(audit).includes(token), 'the audit event never carries the token')
  })

  test('a tool outside the manifest is denied', async () => {
    const r = await authorize(gw.url, token, { action: { tool: 'files.delete', params: {} } })
    assert.equal(r.status, 200)
    assert.equal(r.body.decision, 'deny')
    assert.equal(r.body.enforced, true)
    assert.match(String((r.body.reasons as string[])[0]), /capability:missing/)
  })

  test('Aegis-Dry-Run: 1 answers the decision with enforced false', async () => {
    const r = await authorize(gw.url, token, { action: { tool: 'files.delete' } }, { 'aegis-dry-run': '1' })
    assert.equal(r.status, 200)
    assert.equal(r.body.decision, 'deny')
    assert.equal(r.body.enforced, false)
    assert.ok((await metricValue(gw.url, 'aegis_decisions_total', { decision: 'deny', enforced: 'false' })) >= 1)
  })

  test('gateway.shadow computes decisions but enforces none', async () => {
    const shadow = await env.startGateway({ gateway: { shadow: true } })
    try {
      const r = await authorize(shadow.url, token, { action: { tool: 'files.delete' } })
      assert.equal(r.status, 200)
      assert.equal(r.body.decision, 'deny')
      assert.equal(r.body.enforced, false)
    } finally {
      await shadow.close()
    }
  })

  test('no token, a garbage token and a foreign-signed token get 401 invalid_token with WWW-Authenticate', async () => {
    for (const t of [undefined, 'not-a-jwt', `${token.slice(0, -4)}AAAA`]) {
      const r = await authorize(gw.url, t, { action: { tool: 'crm.read' } })
      assert.equal(r.status, 401)
      assert.equal(r.body.error, 'invalid_token')
      assert.match(r.headers.get('www-authenticate') ?? '', /^Bearer /)
      if (t !== undefined) assert.match(r.headers.get('www-authenticate') ?? '', /error="invalid_token"/)
    }
    // and valid tokens still work afterwards
    assert.equal((await authorize(gw.url, token, { action: { tool: 'crm.read' } })).body.decision, 'allow')
  })

  test('bad bodies get 400 invalid_request and change nothing', async () => {
    const bodies: unknown[] = [
      [],
      { action: 'crm.read' },
      { action: { tool: '' } },
      { action: { tool: 'crm.read', params: [1] } },
      { action: { tool: 'crm.read' }, resource: 42 },
      { action: { tool: 'crm.read' }, extra: true },
      { action: { tool: 'x'.repeat(300) } },
      '{"action":',
    ]
    for (const b of bodies) {
      const r = await authorize(gw.url, token, b)
      assert.equal(r.status, 400, JSON.stringify(b))
      assert.equal(r.body.error, 'invalid_request')
    }
  })

  test('the healthz and metrics endpoints report the feed', async () => {
    const h = await fetch(`${gw.url}/healthz`)
    assert.equal(h.status, 200)
    const body = (await h.json()) as { feed: { snapshot_loaded: boolean; connected: boolean } }
    assert.equal(body.feed.snapshot_loaded, true)
    assert.equal(body.feed.connected, true)
    const text = await (await fetch(`${gw.url}/metrics`)).text()
    assert.match(text, /aegis_deny_list_size/)
    assert.match(text, /aegis_decision_duration_seconds_bucket/)
  })
})
