/**
 * Cluster-wide KPIs on real processes: two control planes on one PostgreSQL
 * schema, one gateway that reports its stats to control plane A only.
 * Tokens are minted at both, a revocation is recorded at B, an approval is
 * opened through A: `GET /admin/v1/kpis` (global and a tenant admin's) and
 * the `aegis_approvals_open` gauge answer the same figures at A and at B.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { isDeepStrictEqual } from 'node:util'
import { randomBytes } from 'node:crypto'
import { freePort } from '../../helpers/ports.js'
import { startControlPlaneProcess, type ControlPlaneProcess } from '../../helpers/control-plane-processes.js'
import { startGatewayProcess, type GatewayProcess } from '../../helpers/gateway-processes.js'
import { freshPostgresSchema, skipWithoutPostgres } from '../../helpers/services.js'
import { TEST_POLICY } from '../../helpers/gateway-env.js'

interface Kpis {
  issuance_tps: number
  issuance_tps_window_seconds: number
  avg_token_lifetime_seconds: number
  tokens_issued: number
  revocations: number
  replay_attempts: number
  decisions: Record<string, number>
  would_deny: Record<string, number>
  approvals_open: number
  history: { start_at: number; issued: number[]; revocations: number[]; replay_attempts: number[]; decisions: Record<string, number[]> }
}

const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0)
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

const skip = await skipWithoutPostgres()

describe("KPIs and the open-approvals gauge are the cluster's, whichever control plane answers", { skip }, () => {
  let schema: Awaited<ReturnType<typeof freshPostgresSchema>>
  const cps: ControlPlaneProcess[] = []
  let gw: GatewayProcess
  const adminToken = `adm_${randomBytes(24).toString('base64url')}`
  const gatewayToken = `gw_${randomBytes(24).toString('base64url')}`
  const tenant = `t-${randomBytes(4).toString('hex')}`
  let A: string
  let B: string
  let cred: { client_id: string; client_secret: string }

  const call = async (
    base: string,
    method: string,
    path: string,
    body?: unknown,
    token = adminToken,
  ): Promise<{ status: number; body: Record<string, unknown>; text: string }> => {
    const res = await fetch(`${base}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    })
    const text = await res.text()
    let parsed: Record<string, unknown> = {}
    try {
      parsed = text ? (JSON.parse(text) as Record<string, unknown>) : {}
    } catch {
      /* not JSON (metrics) */
    }
    return { status: res.status, body: parsed, text }
  }
  const admin = async (base: string, method: string, path: string, body?: unknown): Promise<Record<string, unknown>> => {
    const r = await call(base, method, `/admin/v1${path}`, body)
    if (r.status >= 300) throw new Error(`${method} ${path} answered ${r.status}: ${r.text}`)
    return r.body
  }
  const mint = async (base: string): Promise<string> => {
    const res = await fetch(`${base}/oauth2/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'client_credentials', client_id: cred.client_id, client_secret: cred.client_secret }),
    })
    const body = (await res.json()) as { access_token?: string }
    assert.ok(body.access_token, JSON.stringify(body))
    return body.access_token
  }
  const authorize = async (token: string, tool: string, params: Record<string, unknown> = {}): Promise<string> => {
    const res = await fetch(`${gw.url}/v1/authorize`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ action: { tool, params } }),
    })
    const body = (await res.json()) as { decision?: string; error?: string }
    return body.decision ?? body.error ?? String(res.status)
  }
  const gauge = async (base: string): Promise<number> => {
    const { text } = await call(base, 'GET', '/metrics')
    const m = /^aegis_approvals_open (\d+)/m.exec(text)
    assert.ok(m, 'aegis_approvals_open is exported')
    return Number(m[1])
  }

  before(async () => {
    schema = await freshPostgresSchema()
    const port = await freePort()
    const issuer = `http://127.0.0.1:${port}`
    const base = {
      issuer,
      databaseUrl: schema.url,
      kek: randomBytes(32).toString('hex'),
      adminToken,
      gatewayToken,
      logLevel: 'silent',
      rateLimit: { perClient: 1_000_000, perIp: 10_000_000 },
    }
    cps.push(await startControlPlaneProcess({ ...base, instanceId: 'kpi-cp-a' }, { port }))
    cps.push(await startControlPlaneProcess({ ...base, instanceId: 'kpi-cp-b' }))
    A = cps[0]!.url
    B = cps[1]!.url
    await admin(A, 'POST', '/tenants', { id: tenant, name: 'KPIs' })
    await admin(A, 'POST', `/tenants/${tenant}/agents`, {
      agent_id: 'kpi-bot',
      scopes: [],
      capabilities: ['crm.read', 'payments.transfer', 'files.delete'],
      max_ttl_seconds: 600,
    })
    cred = (await admin(A, 'POST', `/tenants/${tenant}/agents/kpi-bot/bootstrap-credentials`, {
      ttl_seconds: 3600,
      single_use: false,
    })) as unknown as typeof cred
    const p = await admin(A, 'POST', `/tenants/${tenant}/policies`, { version: '2026-12-01.1', cedar: TEST_POLICY, mode: 'enforce' })
    await admin(A, 'POST', `/tenants/${tenant}/policies/${p.id as string}/activate`)
    // The gateway talks to A only: its stats reports never reach B directly.
    gw = await startGatewayProcess({ issuer, controlPlaneUrl: A, gatewayToken, logLevel: 'silent', gateway: { id: `gw-kpi-${tenant}` } })
  })

  after(async () => {
    await gw?.stop()
    await Promise.all(cps.map((c) => c.stop()))
    await schema?.drop()
  })

  test('tokens from both, decisions reported to A, a revocation at B, an approval through A: A and B answer the same', async () => {
    const tokens = [await mint(A), await mint(A), await mint(B), await mint(B), await mint(B)]
    // The bundle reaches the gateway over A's feed: wait until it decides with it.
    for (let i = 0; ; i++) {
      if ((await authorize(tokens[0]!, 'crm.read')) === 'allow') break
      assert.ok(i < 200, 'the gateway never allowed crm.read')
      await sleep(50)
    }
    assert.equal(await authorize(tokens[1]!, 'crm.read'), 'allow')
    assert.equal(await authorize(tokens[2]!, 'files.delete'), 'deny')
    assert.equal(await authorize(tokens[3]!, 'payments.transfer', { amount: 10 }), 'allow')
    assert.notEqual(await authorize(tokens[3]!, 'payments.transfer', { amount: 10 }), 'allow', 'a single-use token presented again is a replay')
    assert.equal(await authorize(tokens[4]!, 'payments.transfer', { amount: 5000 }), 'approval_needed')
    await admin(B, 'POST', '/revocations', { type: 'agent', value: 'kpi-bot', tenant, reason: 'kpi test' })

    const tenantAdmin = String((await admin(B, 'POST', '/admin-tokens', { tenant, role: 'admin', name: 'kpi-tenant-admin' })).token)
    const figures = (k: Kpis): Record<string, unknown> => ({
      tokens_issued: k.tokens_issued,
      avg_token_lifetime_seconds: k.avg_token_lifetime_seconds,
      revocations: k.revocations,
      replay_attempts: k.replay_attempts,
      decisions: k.decisions,
      would_deny: k.would_deny,
      approvals_open: k.approvals_open,
      issued_last_hour: sum(k.history.issued),
      revocations_last_hour: sum(k.history.revocations),
      replays_last_hour: sum(k.history.replay_attempts),
    })
    let a: Kpis | undefined
    let b: Kpis | undefined
    for (let i = 0; ; i++) {
      a = (await admin(A, 'GET', '/kpis?history=1')) as unknown as Kpis
      b = (await admin(B, 'GET', '/kpis?history=1')) as unknown as Kpis
      // A is read before B: the gateway's report may land between the two reads, so both must show it. And
      // B's own counts reach the store within a second (its flush) or when B answers: A may read before that.
      const reported = (k: Kpis): boolean => (k.decisions.allow ?? 0) >= 3 && k.replay_attempts >= 1 && (k.decisions.approval_needed ?? 0) >= 1
      if (reported(a) && reported(b) && isDeepStrictEqual(figures(a), figures(b))) break
      assert.ok(i < 100, `A and B never answered the same figures with the gateway's reports: A ${JSON.stringify(a)}, B ${JSON.stringify(b)}`)
      await sleep(100)
    }
    assert.deepEqual(figures(a), figures(b))
    assert.equal(b.tokens_issued, 5, 'two tokens minted at A and three at B')
    assert.equal(b.avg_token_lifetime_seconds, 600)
    assert.equal(b.revocations, 1, 'the revocation recorded at B')
    assert.equal(b.replay_attempts, 1)
    assert.equal(b.decisions.allow, 3)
    assert.equal(b.decisions.deny, 1)
    assert.equal(b.decisions.approval_needed, 1)
    assert.equal(b.approvals_open, 1)
    assert.equal(b.issuance_tps_window_seconds, 60)
    assert.ok(a.issuance_tps > 0 && b.issuance_tps > 0)

    // A tenant admin's view is the same on both, and equals the global one here (one tenant).
    const ta = (await call(A, 'GET', '/admin/v1/kpis?history=1', undefined, tenantAdmin)).body as unknown as Kpis
    const tb = (await call(B, 'GET', '/admin/v1/kpis?history=1', undefined, tenantAdmin)).body as unknown as Kpis
    assert.deepEqual(figures(ta), figures(tb))
    assert.equal(tb.tokens_issued, 5)
    assert.equal(tb.decisions.allow, 3)

    // The gauge counts the store's open requests: the same on the control plane that opened it and on the other.
    assert.equal(await gauge(A), 1)
    assert.equal(await gauge(B), 1)
    const { approvals } = (await admin(B, 'GET', '/approvals?status=pending')) as { approvals: Array<{ id: string }> }
    await admin(B, 'POST', `/approvals/${approvals[0]!.id}/deny`, { reason: 'kpi test' })
    assert.equal(await gauge(A), 0, 'decided at B, no longer open at A')
    assert.equal(await gauge(B), 0)
    assert.equal(((await admin(A, 'GET', '/kpis')) as unknown as Kpis).approvals_open, 0)
  })
})
