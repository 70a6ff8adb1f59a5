/**
 * The decision log end to end: gateways (two processes) upload what they
 * decide, the control plane stores it once and pages it newest first by
 * filter, scoped to the caller's tenant; no token reaches a stored record.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { gzipSync } from 'node:zlib'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { decodeJwt } from 'jose'
import { authorize, eventually, startGatewayEnv, type Credential, type GatewayEnv } from '../../helpers/gateway-env.js'
import { startGatewayProcess, type GatewayProcess } from '../../helpers/gateway-processes.js'

interface Wire {
  id: string
  ts_ms: number
  gateway_id: string
  tenant: string | null
  agent_id: string | null
  tool: string | null
  decision: string
  enforced: boolean | null
  jti: string | null
  type: string
  reasons: string[]
  policy_version: string | null
  latency_ms: number | null
  params: Record<string, unknown> | null
}

async function get(
  env: GatewayEnv,
  query: string,
  token = env.adminToken,
): Promise<{ status: number; body: { decisions: Wire[]; next_cursor: string | null; error?: string } }> {
  const res = await fetch(`${env.issuer}/admin/v1/decisions${query}`, { headers: { authorization: `Bearer ${token}` } })
  return { status: res.status, body: (await res.json()) as { decisions: Wire[]; next_cursor: string | null } }
}

/** Every page of a query, following next_cursor. */
async function pages(env: GatewayEnv, query: string, limit: number, token?: string): Promise<Wire[]> {
  const out: Wire[] = []
  let cursor: string | null = null
  for (;;) {
    const sep = query === '' ? '?' : '&'
    const r = await get(env, `${query}${sep}limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`, token)
    assert.equal(r.status, 200, JSON.stringify(r.body))
    out.push(...r.body.decisions)
    if (r.body.next_cursor === null) return out
    cursor = r.body.next_cursor
  }
}

function upload(env: GatewayEnv, token: string, body: unknown, headers: Record<string, string> = { 'content-encoding': 'gzip' }): Promise<Response> {
  const json = JSON.stringify(body)
  return fetch(`${env.issuer}/admin/v1/decisions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', ...headers },
    body: headers['content-encoding'] === 'gzip' ? gzipSync(json) : json,
  })
}

function wireRecord(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    id: randomBytes(16).toString('hex'),
    ts_ms: Date.now(),
    type: 'decision',
    mode: 'authorize',
    decision: 'allow',
    tenant: null,
    agent_id: 'bot',
    tool: 'crm.read',
    enforced: true,
    reasons: [],
    ...over,
  }
}

const isNewestFirst = (rs: Wire[]): boolean =>
  rs.every((r, i) => i === 0 || rs[i - 1]!.ts_ms > r.ts_ms || (rs[i - 1]!.ts_ms === r.ts_ms && rs[i - 1]!.id > r.id))

describe('decision log: two gateway processes upload, the control plane stores, filters and pages', () => {
  let env: GatewayEnv
  let cred: Credential
  const gateways: GatewayProcess[] = []
  const tokens: string[] = []
  const answers: Array<{ gateway: string; status: number; decision: string | undefined; tool: string }> = []

  before(async () => {
    env = await startGatewayEnv()
    cred = await env.agent('log-bot', ['crm.read'])
    for (let i = 1; i <= 2; i++) {
      gateways.push(
        await startGatewayProcess({
          issuer: env.issuer,
          gatewayToken: env.gatewayToken,
          logLevel: 'silent',
          gateway: { id: `gw-log-${i}-${env.tenant}` },
          decisionLog: { flushIntervalMs: 50, batchSize: 7 },
        }),
      )
    }
    for (const g of gateways) {
      for (let k = 0; k < 12; k++) {
        const token = await env.token(cred)
        tokens.push(token)
        const tool = k % 3 === 0 ? 'payments.transfer' : 'crm.read'
        const r = await authorize(g.url, token, { action: { tool, params: { q: 'acme' } } })
        answers.push({ gateway: g.gatewayId, status: r.status, decision: r.body.decision as string | undefined, tool })
      }
      // A refusal: a token that is no token at all.
      const r = await authorize(g.url, 'not-a-token', { action: { tool: 'crm.read' } })
      assert.equal(r.status, 401)
      answers.push({ gateway: g.gatewayId, status: 401, decision: undefined, tool: 'crm.read' })
    }
  })
  after(async () => {
    await Promise.all(gateways.map((g) => g.stop()))
    await env?.close()
  })

  test('every decision and refusal of both gateways arrives once, newest first', async () => {
    await eventually(async () => (await pages(env, '', 1000)).length >= answers.length, 20_000, 50)
    const all = await pages(env, '', 5)
    assert.equal(all.length, answers.length, 'nothing lost, nothing stored twice')
    assert.equal(new Set(all.map((r) => r.id)).size, all.length)
    assert.ok(isNewestFirst(all))
    for (const g of gateways) {
      const mine = all.filter((r) => r.gateway_id === g.gatewayId)
      assert.equal(mine.length, 13, g.gatewayId)
      assert.equal(mine.filter((r) => r.decision === 'refused' && r.type === 'token.refused').length, 1)
    }
    // Each stored decision is the one the caller was answered.
    const decided = all.filter((r) => r.type === 'decision')
    for (const d of decided) {
      assert.equal(d.tenant, env.tenant)
      assert.equal(d.agent_id, 'log-bot')
      assert.equal(d.enforced, true)
      assert.ok(d.jti !== null && tokens.some((t) => decodeJwt(t).jti === d.jti), 'the jti names the token')
      assert.equal(typeof d.latency_ms, 'number')
      assert.equal(typeof d.policy_version, 'string')
      assert.deepEqual(d.params, { q: 'acme' }, 'the decided parameters')
    }
    assert.ok(
      all.filter((r) => r.type !== 'decision').every((r) => r.params === null),
      'a refusal keeps no parameters',
    )
    const answered = (tool: string, decision: string) => answers.filter((a) => a.tool === tool && a.decision === decision).length
    for (const d of new Set(decided.map((r) => `${r.tool} ${r.decision}`))) {
      const [tool, decision] = d.split(' ') as [string, string]
      assert.equal(decided.filter((r) => r.tool === tool && r.decision === decision).length, answered(tool, decision), d)
    }
  })

  test('filters page in order from the cursor', async () => {
    const all = await pages(env, '', 1000)
    const cases: Array<[string, (r: Wire) => boolean]> = [
      [`?tenant=${env.tenant}`, (r) => r.tenant === env.tenant],
      [`?tenant=${env.tenant}&agent_id=log-bot&tool=crm.read`, (r) => r.tenant === env.tenant && r.agent_id === 'log-bot' && r.tool === 'crm.read'],
      ['?decision=refused', (r) => r.decision === 'refused'],
      [`?tenant=${env.tenant}&enforced=true&tool=payments.transfer`, (r) => r.tenant === env.tenant && r.enforced === true && r.tool === 'payments.transfer'],
      [
        `?since=${new Date(all[5]!.ts_ms).toISOString()}&until=${new Date(all[1]!.ts_ms).toISOString()}`,
        (r) => r.ts_ms >= all[5]!.ts_ms && r.ts_ms < all[1]!.ts_ms,
      ],
    ]
    for (const [q, keep] of cases) {
      const want = all.filter(keep).map((r) => r.id)
      assert.ok(want.length > 0, q)
      assert.deepEqual(
        (await pages(env, q, 3)).map((r) => r.id),
        want,
        q,
      )
    }
    assert.equal((await get(env, '?limit=0')).status, 400)
    assert.equal((await get(env, '?cursor=bogus')).status, 400)
    assert.equal((await get(env, '?enforced=maybe')).status, 400)
  })

  test('no stored record carries a token', async () => {
    const db = new Database(join(env.cpConfig.dataDir, 'aegis.db'), { readonly: true, fileMustExist: true })
    try {
      const rows = db.prepare('SELECT * FROM decisions').all() as Array<Record<string, unknown>>
      assert.equal(rows.length, answers.length)
      const text = JSON.stringify(rows)
      for (const t of [...tokens, 'not-a-token', env.gatewayToken, env.adminToken]) {
        assert.ok(!text.includes(t), 'a token string is stored')
        // Nor any of its three parts (a signature or payload alone is still the token's material).
        for (const part of t.split('.')) if (part.length >= 16) assert.ok(!text.includes(part), 'part of a token is stored')
      }
    } finally {
      db.close()
    }
  })

  test('tenant scoping: a tenant admin reads only its tenant; a tenant gateway token uploads only for its tenant', async () => {
    const other = `o-${randomBytes(3).toString('hex')}`
    await env.admin('POST', '/tenants', { id: other, name: 'Other' })
    const otherRecord = wireRecord({ tenant: other })
    assert.equal((await upload(env, env.gatewayToken, { gateway_id: 'gw-direct', records: [otherRecord] })).status, 202)
    const own = (await env.admin('POST', '/admin-tokens', { tenant: env.tenant, role: 'admin', name: `log-own-${env.tenant}` })) as { token: string }
    const mine = await pages(env, '', 100, own.token)
    assert.ok(mine.length > 0)
    assert.ok(
      mine.every((r) => r.tenant === env.tenant),
      'only its own tenant',
    )
    assert.equal((await get(env, `?tenant=${other}`, own.token)).status, 403)
    assert.deepEqual(
      (await pages(env, `?tenant=${other}`, 10)).map((r) => r.id),
      [otherRecord.id],
      'a global admin reads any tenant',
    )

    const tenantGateway = (await env.admin('POST', '/admin-tokens', { tenant: env.tenant, role: 'gateway', name: `log-gw-${env.tenant}` })) as { token: string }
    const res = await upload(env, tenantGateway.token, {
      gateway_id: 'gw-tenant',
      records: [wireRecord({ tenant: env.tenant }), wireRecord({ tenant: other })],
    })
    assert.equal(res.status, 403)
    // A refusal it recorded before knowing a tenant is its tenant's.
    const anon = wireRecord({ tenant: null, type: 'token.refused', decision: 'refused', agent_id: null })
    assert.equal((await upload(env, tenantGateway.token, { gateway_id: 'gw-tenant', records: [anon] })).status, 202)
    const stored = (await pages(env, `?tenant=${env.tenant}&decision=refused`, 100)).find((r) => r.id === anon.id)
    assert.equal(stored?.tenant, env.tenant)
    // An admin console session never uploads; nor does an approver, nor an anonymous caller.
    assert.equal((await upload(env, 'nope', { gateway_id: 'x', records: [wireRecord()] })).status, 401)
  })

  test('uploads: a retried batch is stored once; bounds and encodings are enforced', async () => {
    const batch = { gateway_id: 'gw-retry', records: [wireRecord({ tenant: env.tenant }), wireRecord({ tenant: env.tenant })] }
    const first = await upload(env, env.gatewayToken, batch)
    assert.equal(first.status, 202)
    assert.deepEqual(await first.json(), { accepted: 2, stored: 2, duplicates: 0 })
    const again = await upload(env, env.gatewayToken, batch)
    assert.deepEqual(await again.json(), { accepted: 2, stored: 0, duplicates: 2 })
    // Uncompressed JSON is accepted too; another encoding is not.
    assert.equal((await upload(env, env.gatewayToken, { gateway_id: 'gw-plain', records: [wireRecord()] }, {})).status, 202)
    assert.equal((await upload(env, env.gatewayToken, { gateway_id: 'gw-br', records: [wireRecord()] }, { 'content-encoding': 'br' })).status, 415)
    // A gzip bomb: small on the wire, far over the decompressed bound.
    const bomb = gzipSync(Buffer.concat([Buffer.from('{"gateway_id":"gw","records":[],"pad":"'), Buffer.alloc(20 * 1024 * 1024, 0x61), Buffer.from('"}')]))
    const r = await fetch(`${env.issuer}/admin/v1/decisions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${env.gatewayToken}`, 'content-type': 'application/json', 'content-encoding': 'gzip' },
      body: bomb,
    })
    assert.equal(r.status, 413)
    const tooMany = { gateway_id: 'gw', records: Array.from({ length: 1001 }, () => wireRecord()) }
    assert.equal((await upload(env, env.gatewayToken, tooMany)).status, 400)
    assert.equal((await upload(env, env.gatewayToken, { gateway_id: 'gw', records: [wireRecord({ token: 'eyJ' })] })).status, 400, 'no field beyond the schema')
    assert.equal((await upload(env, env.gatewayToken, { gateway_id: 'gw', records: [wireRecord({ ts_ms: Date.now() + 3 * 24 * 3600_000 })] })).status, 400)
  })
})

describe('decision log retention', () => {
  let env: GatewayEnv
  before(async () => {
    env = await startGatewayEnv({ overrides: { decisionLog: { retentionHours: 1, pruneIntervalSeconds: 1 } } })
  })
  after(async () => {
    await env?.close()
  })

  test('records older than the retention period are deleted, younger ones kept', async () => {
    const now = Date.now()
    const old = Array.from({ length: 30 }, (_, i) => wireRecord({ tenant: env.tenant, ts_ms: now - 2 * 3600_000 - i }))
    const young = Array.from({ length: 3 }, (_, i) => wireRecord({ tenant: env.tenant, ts_ms: now - i }))
    assert.equal((await upload(env, env.gatewayToken, { gateway_id: 'gw-old', records: [...old, ...young] })).status, 202)
    await eventually(async () => (await pages(env, '', 100)).length === young.length, 20_000, 100)
    assert.deepEqual(
      (await pages(env, '', 100)).map((r) => r.id),
      young.map((r) => r.id as string),
    )
  })
})
