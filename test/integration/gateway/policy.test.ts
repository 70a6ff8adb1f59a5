import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import {
  activatePolicy,
  authorize,
  eventually,
  metricValue,
  startGatewayEnv,
  TEST_POLICY,
  type GatewayEnv,
  type RunningGateway,
} from '../../helpers/gateway-env.js'
import { MemoryDecisionSink } from '../../../src/gateway/index.js'
import { noApprovals } from '../../../src/gateway/pipeline/index.js'

const TOOLS = ['crm.read', 'crm.update', 'payments.transfer', 'payments.charge']

describe('gateway with a Cedar bundle: replay, approvals, sanitize, shadow, capability changes', () => {
  let env: GatewayEnv
  let gw: RunningGateway
  let token: string
  const sink = new MemoryDecisionSink()

  before(async () => {
    env = await startGatewayEnv()
    const cred = await env.agent('pay-bot', TOOLS)
    gw = await env.startGateway({}, { decisions: sink })
    await activatePolicy(env, TEST_POLICY)
    token = await env.token(cred)
    await eventually(async () => (await authorize(gw.url, token, { action: { tool: 'crm.read' } })).body.policy_version !== 'none')
  })
  after(async () => {
    await env?.close()
  })

  test('replayed jti on a high-risk call gets invalid_token and the counter moves', async () => {
    const cred = await env.admin('POST', `/tenants/${env.tenant}/agents/pay-bot/bootstrap-credentials`, { ttl_seconds: 600, single_use: false })
    const t = await env.token(cred as never)
    const call = { action: { tool: 'payments.transfer', params: { amount: 10 } } }
    // A dry run does not use up the single use.
    assert.equal((await authorize(gw.url, t, call, { 'aegis-dry-run': '1' })).body.decision, 'allow')
    const before = await metricValue(gw.url, 'aegis_replay_attempts_total')
    const first = await authorize(gw.url, t, call)
    assert.equal(first.status, 200)
    assert.equal(first.body.decision, 'allow')
    const second = await authorize(gw.url, t, call)
    assert.equal(second.status, 401)
    assert.equal(second.body.error, 'invalid_token')
    assert.match(second.headers.get('www-authenticate') ?? '', /error="invalid_token"/)
    assert.equal(await metricValue(gw.url, 'aegis_replay_attempts_total'), before + 1)
    assert.ok(sink.events.some((e) => e.type === 'token.replayed' && e.tool === 'payments.transfer'))
    // Normal-risk calls with the same token still work: only high-risk actions are single-use.
    assert.equal((await authorize(gw.url, t, { action: { tool: 'crm.read' } })).body.decision, 'allow')
  })

  test('approval_needed goes through the approval hook (an approval request with its status URL)', async () => {
    const r = await authorize(gw.url, token, { action: { tool: 'payments.transfer', params: { amount: 5000 } } })
    assert.equal(r.status, 200)
    assert.equal(r.body.decision, 'approval_needed')
    assert.equal(r.body.enforced, true)
    const approval = r.body.approval as { id: string; status_url: string }
    assert.equal(typeof approval.id, 'string')
    assert.match(approval.status_url, new RegExp(approval.id))
  })

  test('with no approval hook, approval_needed is returned as is, without an approval id', async () => {
    const plain = await env.startGateway({}, { approvals: noApprovals })
    try {
      const r = await authorize(plain.url, token, { action: { tool: 'payments.transfer', params: { amount: 5000 } } })
      assert.equal(r.body.decision, 'approval_needed')
      assert.equal(r.body.approval, undefined)
    } finally {
      await plain.close()
    }
  })

  test('sanitize answers with the obligations applied to params', async () => {
    const r = await authorize(gw.url, token, { action: { tool: 'payments.charge', params: { amount: 5, card_number: '4111111111111111' } } })
    assert.equal(r.body.decision, 'sanitize')
    assert.deepEqual(r.body.obligations, [{ type: 'redact', path: '/params/card_number' }])
    assert.deepEqual(r.body.params, { amount: 5, card_number: '[REDACTED]' })
  })

  test('a shadow bundle is computed but not enforced; the strict capability check still is', async () => {
    const version = await activatePolicy(env, 'forbid (principal, action, resource);', 'shadow')
    await eventually(async () => (await authorize(gw.url, token, { action: { tool: 'crm.read' } })).body.policy_version === version)
    const r = await authorize(gw.url, token, { action: { tool: 'crm.read' } })
    assert.equal(r.body.decision, 'deny')
    assert.equal(r.body.enforced, false)
    const outside = await authorize(gw.url, token, { action: { tool: 'files.delete' } })
    assert.equal(outside.body.decision, 'deny')
    assert.equal(outside.body.enforced, true)
    await activatePolicy(env, TEST_POLICY)
  })

  test("capability_hash mismatch after the agent's capabilities change is refused", async () => {
    await env.admin('PATCH', `/tenants/${env.tenant}/agents/pay-bot`, { capabilities: ['crm.read'] })
    await eventually(async () => (await authorize(gw.url, token, { action: { tool: 'crm.read' } })).status === 401)
    const r = await authorize(gw.url, token, { action: { tool: 'crm.read' } })
    assert.equal(r.body.error, 'invalid_token')
    assert.match(String(r.body.error_description), /capability_hash/)
    const cred = await env.admin('POST', `/tenants/${env.tenant}/agents/pay-bot/bootstrap-credentials`, { ttl_seconds: 600, single_use: false })
    const fresh = await env.token(cred as never)
    assert.equal((await authorize(gw.url, fresh, { action: { tool: 'crm.read' } })).body.decision, 'allow')
    assert.equal((await authorize(gw.url, fresh, { action: { tool: 'crm.update' } })).body.decision, 'deny')
  })

  test('gateway.minPolicyVersion refuses tokens minted under an older bundle', async () => {
    const strictGw = await env.startGateway({ gateway: { minPolicyVersion: '9999-01-01.1' } })
    try {
      const r = await authorize(strictGw.url, token, { action: { tool: 'crm.read' } })
      assert.equal(r.status, 401)
      assert.equal(r.body.error, 'invalid_token')
    } finally {
      await strictGw.close()
    }
  })
})
