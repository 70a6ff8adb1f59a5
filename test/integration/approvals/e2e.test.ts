/**
 * End to end, everything real: a control plane and a gateway on loopback
 * (SQLite, in-process feed), a Cedar bundle with an `@approval("finance")`
 * forbid, an agent with a bootstrap credential. A call answers
 * approval_needed; an approver approves over the admin API; the retried
 * call with Aegis-Override is allowed exactly once; replays, other
 * parameters, another agent and an expired override are refused (401) and
 * recorded by the gateway's decision sink. Then the same through the SDK.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { loadConfig } from '../../../src/config/load.js'
import { buildControlPlane, type ControlPlane } from '../../../src/control-plane/app.js'
import { buildGateway, type Gateway } from '../../../src/gateway/app.js'
import type { DecisionSink, GatewayAuditEvent } from '../../../src/gateway/deps.js'
import { ManualClock } from '../../../src/lib/clock.js'
import { AegisClient } from '../../../src/sdk/index.js'
import { call } from './harness.js'

const CEDAR = `
@id("transfer-permit")
permit (principal, action == Action::"payments.transfer", resource)
when { principal.scopes.contains("payments:write") };

@id("transfer-approval")
@approval("finance")
@reason("transfers above 1000 need a finance approver")
forbid (principal, action == Action::"payments.transfer", resource)
when { context.params has amount && context.params.amount > 1000 }
unless { context.override };
`

class RecordingSink implements DecisionSink {
  readonly events: GatewayAuditEvent[] = []
  record(e: GatewayAuditEvent): void {
    this.events.push(e)
  }
}

describe('approval end to end: gateway → approval → override retry', () => {
  const dir = mkdtempSync(join(tmpdir(), 'aegis-approvals-e2e-'))
  const adminToken = `adm_${randomBytes(32).toString('base64url')}`
  const gatewayToken = `gw_${randomBytes(32).toString('base64url')}`
  let cp: ControlPlane
  let gw: Gateway
  let issuer = ''
  let gatewayUrl = ''
  const sink = new RecordingSink()
  const gwClock = new ManualClock(Date.now())
  let approverToken = ''
  const creds: Record<string, { client_id: string; client_secret: string }> = {}

  const admin = async (method: string, path: string, body?: unknown, token = adminToken) => {
    const res = await call(`${issuer}${path}`, { method, token, ...(body !== undefined ? { body } : {}) })
    assert.ok(res.status < 300, `${method} ${path}: ${res.status} ${JSON.stringify(res.body)}`)
    return res.body
  }
  const accessToken = async (agent: string) => {
    const c = creds[agent]!
    const res = await fetch(`${issuer}/oauth2/token`, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        authorization: `Basic ${Buffer.from(`${c.client_id}:${c.client_secret}`).toString('base64')}`,
      },
      body: 'grant_type=client_credentials',
    })
    const json = (await res.json()) as { access_token: string }
    assert.equal(res.status, 200)
    return json.access_token
  }
  const authorize = (token: string, amount: number, override?: string) =>
    call(`${gatewayUrl}/v1/authorize`, {
      token,
      body: { action: { tool: 'payments.transfer', params: { amount, currency: 'EUR' } }, resource: 'account:ops' },
      ...(override ? { headers: { 'aegis-override': override } } : {}),
    })

  before(async () => {
    const base = { dataDir: dir, kek: randomBytes(32).toString('hex'), logLevel: 'silent', adminToken, gatewayToken, tokens: { overrideTtlSeconds: 60 } }
    const probe = await buildControlPlane(loadConfig({ env: {}, overrides: { ...base, issuer: 'http://127.0.0.1:1' } }))
    await probe.app.listen({ port: 0, host: '127.0.0.1' })
    const port = (probe.app.server.address() as { port: number }).port
    await probe.close()
    issuer = `http://127.0.0.1:${port}`
    const cpConfig = loadConfig({ env: {}, overrides: { ...base, issuer } })
    cp = await buildControlPlane(cpConfig)
    await cp.app.listen({ port, host: '127.0.0.1' })

    await admin('POST', '/admin/v1/tenants', { id: 'acme', name: 'Acme' })
    for (const agent of ['billing-bot', 'other-bot']) {
      await admin('POST', '/admin/v1/tenants/acme/agents', { agent_id: agent, scopes: ['payments:write'], capabilities: ['payments.transfer'] })
      creds[agent] = (await admin('POST', `/admin/v1/tenants/acme/agents/${agent}/bootstrap-credentials`, { ttl_seconds: 3600 })) as {
        client_id: string
        client_secret: string
      }
    }
    approverToken = String(
      (await admin('POST', '/admin/v1/admin-tokens', { tenant: 'acme', role: 'approver', name: 'finance-alice', groups: ['finance'] })).token,
    )
    const now = Date.now()
    await cp.deps.store.policies.create({
      id: 'pol_e2e',
      tenant: 'acme',
      version: '2026-11-29.1',
      cedar: CEDAR,
      mode: 'enforce',
      status: 'inactive',
      createdAt: now,
      activatedAt: null,
      reviewedAt: null,
    })
    await cp.deps.store.policies.activate('acme', 'pol_e2e', now)

    const gwConfig = loadConfig({ env: {}, overrides: { dataDir: dir, logLevel: 'silent', issuer, gatewayToken, gateway: { port: 0 } } })
    gw = await buildGateway(gwConfig, { decisions: sink, clock: gwClock })
    await gw.app.listen({ port: 0, host: '127.0.0.1' })
    await gw.ready
    gatewayUrl = `http://127.0.0.1:${(gw.app.server.address() as { port: number }).port}`
  })

  after(async () => {
    await gw?.close()
    await cp?.close()
    rmSync(dir, { recursive: true, force: true })
  })

  test('denied until approved, then allowed exactly once for exactly that call', async () => {
    const token = await accessToken('billing-bot')
    const small = await authorize(token, 500)
    assert.equal(small.body.decision, 'allow')

    const first = await authorize(token, 5000)
    assert.equal(first.status, 200, JSON.stringify(first.body))
    assert.equal(first.body.decision, 'approval_needed')
    const approval = first.body.approval as { id: string; status_url: string }
    assert.equal(approval.status_url, `${issuer}/v1/approvals/${approval.id}`)
    // Asking again before a decision returns the same request.
    const again = await authorize(token, 5000)
    assert.equal((again.body.approval as { id: string }).id, approval.id)

    const pending = await call(approval.status_url, { token })
    assert.equal(pending.body.status, 'pending')

    const decided = await call(`${issuer}/admin/v1/approvals/${approval.id}/approve`, { token: approverToken, body: { reason: 'invoice 4711' } })
    assert.equal(decided.status, 200, JSON.stringify(decided.body))

    const st = await call(approval.status_url, { token })
    assert.equal(st.body.status, 'approved')
    const override = st.body.override_token as string

    const allowed = await authorize(token, 5000, override)
    assert.equal(allowed.status, 200, JSON.stringify(allowed.body))
    assert.equal(allowed.body.decision, 'allow')
    assert.ok((allowed.body.reasons as string[]).some((r) => r.includes(approval.id)))
    // The same call again, at once: the used approval is not handed out again, a new one is asked for.
    const repeat = await authorize(token, 5000)
    assert.equal(repeat.body.decision, 'approval_needed')
    assert.notEqual((repeat.body.approval as { id: string }).id, approval.id)

    const replayed = await authorize(token, 5000, override)
    assert.equal(replayed.status, 401)
    assert.equal(replayed.body.error, 'invalid_token')
    assert.match(String(replayed.headers.get('www-authenticate')), /invalid_token/)
    assert.ok(sink.events.some((e) => e.type === 'token.replayed' && e.agent_id === 'billing-bot' && /already used/.test(String(e.error))))

    // An override replay counts like an access-token replay: the gateway's counter and the control plane's KPI.
    const metrics = await (await fetch(`${gatewayUrl}/metrics`)).text()
    assert.match(metrics, /^aegis_replay_attempts_total 1$/m)
    let kpis: Record<string, unknown> = {}
    for (let i = 0; i < 100; i++) {
      kpis = (await admin('GET', '/admin/v1/kpis')) as Record<string, unknown>
      if (kpis.replay_attempts === 1) break
      await new Promise((r) => setTimeout(r, 50))
    }
    assert.equal(kpis.replay_attempts, 1, JSON.stringify(kpis))
    const acmeAdmin = String((await admin('POST', '/admin/v1/admin-tokens', { tenant: 'acme', role: 'admin', name: 'acme-kpis' })).token)
    const tenantKpis = (await admin('GET', '/admin/v1/kpis', undefined, acmeAdmin)) as Record<string, unknown>
    assert.equal(tenantKpis.replay_attempts, 1, JSON.stringify(tenantKpis))
  })

  test('an override for other parameters, for another agent, or after expiry is refused and recorded', async () => {
    const token = await accessToken('billing-bot')
    const first = await authorize(token, 7000)
    const approval = first.body.approval as { id: string; status_url: string }
    await call(`${issuer}/admin/v1/approvals/${approval.id}/approve`, { token: approverToken, body: { reason: 'ok' } })
    const override = (await call(approval.status_url, { token })).body.override_token as string

    const otherParams = await authorize(token, 7001, override)
    assert.equal(otherParams.status, 401)
    const otherAgent = await authorize(await accessToken('other-bot'), 7000, override)
    assert.equal(otherAgent.status, 401)
    const refused = sink.events.filter((e) => e.type === 'token.refused' && /different call/.test(String(e.error)))
    assert.ok(refused.some((e) => e.agent_id === 'billing-bot'))
    assert.ok(refused.some((e) => e.agent_id === 'other-bot'))

    // The gateway's clock moves past the override's 60 s lifetime (+ skew); the access token is still valid.
    gwClock.advance(100_000)
    const late = await authorize(token, 7000, override)
    assert.equal(late.status, 401)
    assert.ok(sink.events.some((e) => e.type === 'token.refused' && /expired/.test(String(e.error))))
    gwClock.advance(-100_000)
    // None of the refusals burned the jti: the right call still goes through once.
    const ok = await authorize(token, 7000, override)
    assert.equal(ok.body.decision, 'allow')
  })

  test('the SDK waits for the approval and retries with the override once', async () => {
    const c = creds['billing-bot']!
    const client = new AegisClient({ issuer, clientId: c.client_id, clientSecret: c.client_secret, gatewayUrl })
    try {
      const waiting = client.authorize(
        { tool: 'payments.transfer', params: { amount: 9000, currency: 'EUR' } },
        { waitForApproval: true, timeoutMs: 60_000, resource: 'account:ops' },
      )
      let id: string | undefined
      for (let i = 0; i < 500 && !id; i++) {
        const list = await call(`${issuer}/admin/v1/approvals?status=pending`, { token: approverToken })
        id = (list.body.approvals as Array<{ id: string; params: { amount: number } }>).find((a) => a.params.amount === 9000)?.id
        if (!id) await new Promise((r) => setTimeout(r, 20))
      }
      assert.ok(id, 'the SDK call opened an approval request')
      const decided = await call(`${issuer}/admin/v1/approvals/${id}/approve`, { token: approverToken, body: { reason: 'sdk flow' } })
      assert.equal(decided.status, 200)
      const result = await waiting
      assert.equal(result.decision, 'allow')
    } finally {
      client.close?.()
    }
  })
})
