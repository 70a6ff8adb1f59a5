import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { CedarCompiler } from '../../../src/policy/cedar/engine.js'
import type { Decision, PolicyRequest } from '../../../src/policy/types.js'
import { authorize, eventually, startGatewayEnv, type GatewayEnv, type RunningGateway } from '../../helpers/gateway-env.js'

const PAYMENTS = readFileSync('policies/templates/payments/policy.cedar', 'utf8')
/** Candidate N+1: charges up to 2000 instead of 5000, refunds up to 500 instead of 1000. */
const CANDIDATE = PAYMENTS.replace('context.params.amount <= 5000\n', 'context.params.amount <= 2000\n').replace(
  'context.params.amount <= 1000\n',
  'context.params.amount <= 500\n',
)

interface Change {
  agent_id: string
  tool: string
  from: Decision
  to: Decision
  count: number
  samples: Array<{ params: Record<string, unknown> | null; resource: string | null }>
}
interface Diff {
  samples: number
  changed: number
  changes: Change[]
  unchanged: Array<{ agent_id: string; tool: string; decision: Decision; count: number }>
  reviewed_at: number | null
}

describe('candidate bundle diff from live gateway calls', () => {
  let env: GatewayEnv
  let gw: RunningGateway
  let activeId = ''
  let candidateId = ''
  const V1 = '2026-11-29.1'
  const V2 = '2026-11-29.2'

  before(async () => {
    env = await startGatewayEnv()
    assert.notEqual(CANDIDATE, PAYMENTS)
    activeId = (await env.admin('POST', `/tenants/${env.tenant}/policies`, { version: V1, cedar: PAYMENTS, mode: 'enforce' })).id as string
    await env.admin('POST', `/tenants/${env.tenant}/policies/${activeId}/activate`)
    candidateId = (await env.admin('POST', `/tenants/${env.tenant}/policies`, { version: V2, cedar: CANDIDATE, mode: 'enforce' })).id as string
    await env.admin('POST', `/tenants/${env.tenant}/policies/${candidateId}/candidate`)
    gw = await env.startGateway()
  })
  after(async () => {
    await env?.close()
  })

  test('a replayed stream through /v1/authorize: the diff names exactly the calls whose decision changes; activation waits for review', async () => {
    const agents = ['charge-bot', 'refund-bot']
    const tokens = new Map<string, string>()
    for (const a of agents) tokens.set(a, await env.token(await env.agent(a, ['payments.charge', 'payments.refund'])))
    // Both bundles, evaluated here on the same calls, give the expected diff.
    const compiler = new CedarCompiler()
    const active = compiler.compile({ id: activeId, tenant: env.tenant, version: V1, cedar: PAYMENTS, mode: 'enforce' })
    const candidate = compiler.compile({ id: candidateId, tenant: env.tenant, version: V2, cedar: CANDIDATE, mode: 'shadow' })
    const expected = new Map<string, number>()
    const unchanged = new Map<string, number>()
    const calls = 60
    for (let i = 0; i < calls; i++) {
      const agent = agents[i % 2]!
      const tool = i % 3 === 0 ? 'payments.refund' : 'payments.charge'
      const amount = 100 + i * 97
      const params: Record<string, unknown> =
        tool === 'payments.charge' ? { amount, card_number: '4111111111111111', memo: 'm'.repeat(400) } : { amount, order: `o-${i}` }
      const res = await authorize(gw.url, tokens.get(agent)!, { action: { tool, params } })
      assert.equal(res.status, 200, JSON.stringify(res.body))
      const req: PolicyRequest = {
        principal: {
          tenant: env.tenant,
          agentId: agent,
          clientId: 'c',
          scopes: ['crm:read', 'payments:write'],
          capabilities: ['payments.charge', 'payments.refund'],
        },
        action: tool,
        resource: null,
        params,
        time: Math.floor(Date.now() / 1000),
        clientAddress: null,
        override: false,
      }
      const from = active.evaluate(req).decision
      const to = candidate.evaluate(req).decision
      assert.equal(res.body.decision, from)
      const key = `${agent}|${tool}|${from}|${to}`
      const into = from === to ? unchanged : expected
      into.set(key, (into.get(key) ?? 0) + 1)
    }
    assert.ok(expected.size >= 2, 'the stream must contain changed decisions')
    assert.ok(unchanged.size >= 2, 'and unchanged ones')

    const diff = async (): Promise<Diff> => (await env.admin('GET', `/tenants/${env.tenant}/policies/${candidateId}/diff`)) as unknown as Diff
    await eventually(async () => (await diff()).samples >= calls, 15_000, 100)
    const d = await diff()
    assert.equal(d.samples, calls)
    const got = new Map(d.changes.map((c) => [`${c.agent_id}|${c.tool}|${c.from}|${c.to}`, c.count]))
    assert.deepEqual(Object.fromEntries([...got].sort()), Object.fromEntries([...expected].sort()))
    assert.equal(
      d.changed,
      [...expected.values()].reduce((a, b) => a + b, 0),
    )
    const gotUnchanged = new Map(d.unchanged.map((u) => [`${u.agent_id}|${u.tool}|${u.decision}|${u.decision}`, u.count]))
    assert.deepEqual(Object.fromEntries([...gotUnchanged].sort()), Object.fromEntries([...unchanged].sort()))

    // Sample calls are sanitized: card numbers redacted, long strings cut; the token appears nowhere.
    const text = JSON.stringify(d)
    assert.ok(!text.includes('4111111111111111'), 'card number leaked into the diff')
    for (const t of tokens.values()) assert.ok(!text.includes(t) && !text.includes(t.split('.')[2]!))
    const charge = d.changes.find((c) => c.tool === 'payments.charge')
    assert.ok(charge && charge.samples.length > 0 && charge.samples.length <= 5)
    for (const s of charge.samples) {
      assert.ok(s.params)
      assert.notEqual(s.params.card_number, '4111111111111111')
      assert.ok(typeof s.params.memo === 'string' && (s.params.memo as string).length < 100)
      assert.equal(typeof s.params.amount, 'number')
    }
    const stored = JSON.stringify((await env.cp.deps.store.audit.query({ type: 'policy.diff_sampled', tenant: env.tenant, limit: 100 })).map((e) => e.data))
    assert.ok(!stored.includes('4111111111111111'))

    // The review gate: a candidate whose diff changes decisions is not activated before review.
    const blocked = await fetch(`${env.issuer}/admin/v1/tenants/${env.tenant}/policies/${candidateId}/activate`, {
      method: 'POST',
      headers: { authorization: `Bearer ${env.adminToken}` },
    })
    assert.equal(blocked.status, 409)
    assert.equal(((await blocked.json()) as { error: string }).error, 'conflict')
    assert.equal(((await env.admin('GET', `/tenants/${env.tenant}/policies/${activeId}`)) as { status: string }).status, 'active')
    await env.admin('POST', `/tenants/${env.tenant}/policies/${candidateId}/review`)
    const activated = await env.admin('POST', `/tenants/${env.tenant}/policies/${candidateId}/activate`)
    assert.equal(activated.status, 'active')
  })
})
