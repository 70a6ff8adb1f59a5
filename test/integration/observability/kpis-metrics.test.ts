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

interface Kpis {
  issuance_tps: number
  avg_token_lifetime_seconds: number
  tokens_issued: number
  revocations: number
  replay_attempts: number
  decisions: Record<string, number>
  would_deny: Record<string, number>
  history?: { bucket_seconds: number; issued: number[]; decisions: Record<string, number[]>; would_deny: number[]; replay_attempts: number[] }
}

describe('gateway decisions reach the control plane KPIs; every metric is fed', () => {
  let env: GatewayEnv
  let gw: RunningGateway
  let shadow: RunningGateway
  let token: string

  const kpis = async (q = ''): Promise<Kpis> => (await env.admin('GET', `/kpis${q}`)) as unknown as Kpis

  before(async () => {
    env = await startGatewayEnv()
    await activatePolicy(env, TEST_POLICY)
    gw = await env.startGateway()
    shadow = await env.startGateway({ gateway: { shadow: true } })
    const cred = await env.agent('kpi-bot', ['crm.read', 'payments.transfer', 'files.delete'])
    token = await env.token(cred)
    // The bundle reaches the gateways over the feed: wait until both decide with it (these calls are counted like any other).
    for (const g of [gw, shadow])
      await eventually(async () => (await authorize(g.url, token, { action: { tool: 'crm.read', params: {} } })).body.decision === 'allow', 10_000, 50)
  })
  after(async () => {
    await env?.close()
  })

  test('allow, deny, would-deny, refused and replay attempts show up in /admin/v1/kpis', async () => {
    const before = await kpis()
    assert.equal((await authorize(gw.url, token, { action: { tool: 'crm.read', params: {} } })).body.decision, 'allow')
    assert.equal((await authorize(gw.url, token, { action: { tool: 'files.delete', params: {} } })).body.decision, 'deny')
    assert.equal((await authorize(gw.url, 'garbage', { action: { tool: 'crm.read', params: {} } })).status, 401)
    // Shadow gateway: a deny that is not enforced is a would-deny.
    const sh = await authorize(shadow.url, token, { action: { tool: 'files.delete', params: {} } })
    assert.equal(sh.body.decision, 'deny')
    assert.equal(sh.body.enforced, false)
    // High-risk action: single-use jti, the second call is a replay.
    await authorize(gw.url, token, { action: { tool: 'payments.transfer', params: { amount: 10 } } })
    const replay = await authorize(gw.url, token, { action: { tool: 'payments.transfer', params: { amount: 10 } } })
    assert.equal(replay.status, 401)

    await eventually(
      async () => {
        const k = await kpis()
        return (
          (k.decisions.allow ?? 0) >= (before.decisions.allow ?? 0) + 2 &&
          (k.decisions.deny ?? 0) >= (before.decisions.deny ?? 0) + 2 &&
          (k.decisions.refused ?? 0) >= (before.decisions.refused ?? 0) + 1 &&
          (k.would_deny.deny ?? 0) >= (before.would_deny.deny ?? 0) + 1 &&
          k.replay_attempts >= before.replay_attempts + 1
        )
      },
      15_000,
      100,
    )
    const k = await kpis('?history=1')
    assert.ok(k.history)
    assert.equal(k.history.bucket_seconds, 10)
    assert.equal(k.history.issued.length, 360)
    assert.ok(k.history.issued.reduce((a, b) => a + b, 0) >= 1)
    assert.ok((k.history.decisions.allow ?? []).reduce((a, b) => a + b, 0) >= 2)
    assert.ok(k.history.would_deny.reduce((a, b) => a + b, 0) >= 1)
    assert.ok(k.tokens_issued >= 1)
    assert.ok(k.avg_token_lifetime_seconds > 0)
  })

  test("a tenant admin sees its own tenant's KPIs only", async () => {
    await env.admin('POST', '/tenants', { id: 'kpi-other', name: 'Other' })
    await env.admin('POST', '/tenants/kpi-other/agents', { agent_id: 'other-bot', scopes: [], capabilities: ['crm.read'], max_ttl_seconds: 300 })
    const c = (await env.admin('POST', '/tenants/kpi-other/agents/other-bot/bootstrap-credentials', { ttl_seconds: 3600, single_use: false })) as unknown as {
      client_id: string
      client_secret: string
    }
    const t = await env.token(c)
    for (let i = 0; i < 4; i++) await authorize(gw.url, t, { action: { tool: 'crm.read', params: {} } })
    const otherAdmin = (await env.admin('POST', '/admin-tokens', { tenant: 'kpi-other', role: 'admin', name: 'kpi-other-admin' })) as { token: string }
    const ownAdmin = (await env.admin('POST', '/admin-tokens', { tenant: env.tenant, role: 'admin', name: 'kpi-own-admin' })) as { token: string }
    const as = async (token: string): Promise<Kpis> =>
      (await (await fetch(`${env.issuer}/admin/v1/kpis?history=1`, { headers: { authorization: `Bearer ${token}` } })).json()) as Kpis
    const sum = (o: Record<string, number>) => Object.values(o).reduce((a, b) => a + b, 0)
    await eventually(async () => sum((await as(otherAdmin.token)).decisions) === 4, 15_000, 100)
    const other = await as(otherAdmin.token)
    assert.equal(other.tokens_issued, 1)
    assert.equal(other.revocations, 0)
    assert.equal(
      other.history!.issued.reduce((a, b) => a + b, 0),
      1,
    )
    const global = await kpis()
    const own = await as(ownAdmin.token)
    assert.equal(own.tokens_issued, global.tokens_issued - 1)
    // Refused tokens name no tenant: they count only globally.
    assert.equal(sum(own.decisions), sum(global.decisions) - 4 - (global.decisions.refused ?? 0))
    assert.equal(own.decisions.refused, undefined)
  })

  test('POST /admin/v1/gateways/stats refuses bad bodies and tenant tokens, and changes nothing', async () => {
    const before = await kpis()
    const post = (body: unknown, token = env.gatewayToken) =>
      fetch(`${env.issuer}/admin/v1/gateways/stats`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      })
    for (const bad of [
      { gateway_id: 'g', decisions: { allow: -1 } },
      { gateway_id: 'g', decisions: { 'Bad Kind': 1 } },
      { gateway_id: 'g', decisions: { allow: 1.5 } },
      { gateway_id: '', decisions: {} },
      { gateway_id: 'g', extra: 1 },
      { gateway_id: 'g', replay_attempts: '3' },
      { gateway_id: 'g', decisions: Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`k${i}`, 1])) },
      { gateway_id: 'g', tenants: { 'bad tenant': { decisions: { allow: 1 } } } },
      { gateway_id: 'g', tenants: { acme: { decisions: { allow: 1 }, extra: 1 } } },
      { gateway_id: 'g', tenants: [] },
    ]) {
      const res = await post(bad)
      assert.equal(res.status, 400, JSON.stringify(bad))
      assert.equal(((await res.json()) as { error: string }).error, 'invalid_request')
    }
    const tenantAdmin = (await env.admin('POST', '/admin-tokens', { tenant: env.tenant, role: 'admin', name: 'kpi-tenant' })) as { token: string }
    assert.equal((await post({ gateway_id: 'g', decisions: { allow: 5 } }, tenantAdmin.token)).status, 403)
    assert.equal((await post({ gateway_id: 'g', decisions: { allow: 5 } }, 'nope')).status, 401)
    const afterBad = await kpis()
    assert.equal(afterBad.decisions.allow ?? 0, before.decisions.allow ?? 0)
    assert.equal((await post({ gateway_id: 'g', decisions: { allow: 5 }, would_deny: { deny: 2 }, replay_attempts: 1 })).status, 204)
    const k = await kpis()
    assert.equal(k.decisions.allow, (before.decisions.allow ?? 0) + 5)
    assert.equal(k.would_deny.deny, (before.would_deny.deny ?? 0) + 2)
    assert.equal(k.replay_attempts, before.replay_attempts + 1)
  })

  test('every metric of Metrics is fed on /metrics of the role that owns it', async () => {
    // Revocation and an approval request, so those counters move too.
    await env.admin('POST', '/revocations', { type: 'jti', value: 'kpi-metrics-jti', tenant: env.tenant, reason: 'test' })
    const big = await authorize(gw.url, await env.token(await env.agent('kpi-approver', ['payments.transfer'])), {
      action: { tool: 'payments.transfer', params: { amount: 5000 } },
    })
    assert.equal(big.body.decision, 'approval_needed')
    const cp = env.issuer
    // No tenant label unless metrics.tenantLabels: an open /metrics names no tenant.
    assert.ok((await metricValue(cp, 'aegis_tokens_issued_total', { grant: 'client_credentials' })) >= 2)
    assert.ok((await metricValue(cp, 'aegis_token_lifetime_seconds_count')) >= 2)
    assert.ok((await metricValue(cp, 'aegis_revocations_total', { type: 'jti' })) >= 1)
    assert.ok((await metricValue(cp, 'aegis_approvals_opened_total')) >= 1)
    assert.ok((await metricValue(cp, 'aegis_approvals_open')) >= 1)
    const g = gw.url
    assert.ok((await metricValue(g, 'aegis_decisions_total', { decision: 'allow', enforced: 'true' })) >= 1)
    assert.ok((await metricValue(g, 'aegis_decisions_total', { decision: 'deny', enforced: 'true' })) >= 1)
    assert.ok((await metricValue(shadow.url, 'aegis_decisions_total', { decision: 'deny', enforced: 'false' })) >= 1)
    assert.ok((await metricValue(g, 'aegis_decision_duration_seconds_count')) >= 3)
    assert.ok((await metricValue(g, 'aegis_replay_attempts_total')) >= 1)
    assert.ok((await metricValue(g, 'aegis_jwks_fetches_total')) >= 1)
    await eventually(async () => (await metricValue(g, 'aegis_revocations_total', { type: 'jti' })) >= 1, 10_000, 50)
    assert.ok((await metricValue(g, 'aegis_deny_list_size')) >= 1)
    const text = await (await fetch(`${g}/metrics`)).text()
    assert.match(text, /^aegis_feed_lag_seconds \d/m)
    assert.match(text, /^aegis_feed_applied_seq [1-9]/m)
    // The approval decision feeds approvals_decided.
    const { approvals } = (await env.admin('GET', `/approvals?status=pending&tenant=${env.tenant}`)) as { approvals: Array<{ id: string }> }
    await env.admin('POST', `/approvals/${approvals[0]!.id}/deny`, { reason: 'metrics test' })
    assert.ok((await metricValue(cp, 'aegis_approvals_decided_total', { status: 'denied' })) >= 1)
  })
})
