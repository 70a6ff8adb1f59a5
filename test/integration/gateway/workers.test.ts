/**
 * `aegis serve --role gateway` with several worker processes (issue 20 item
 * 2): both workers answer on the one port, a single-use token is single-use
 * across workers (the replay cache is Redis), a revocation reaches every
 * worker, `/metrics` sums the workers, a killed worker is replaced, and
 * several workers without Redis refuse to start.
 * Real processes: a control plane and a gateway from source, a private
 * redis-server (the gateway's feed uses the default channel names).
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { decodeJwt } from 'jose'
import { AegisProcess, runAegis } from '../../helpers/aegis-process.js'
import { eventually, TEST_POLICY } from '../../helpers/gateway-env.js'
import { adminCaller, clientCredentialsToken } from '../../helpers/admin-http.js'
import { freePort } from '../../helpers/ports.js'
import { PrivateRedis, skipWithoutRedisServer } from '../../helpers/redis-server.js'

/** GET /healthz on a new connection each time, so the cluster hands each to the next worker. */
async function healthOnNewConnection(url: string): Promise<{ gateway_id: string }> {
  const res = await fetch(`${url}/healthz`, { headers: { connection: 'close' } })
  return (await res.json()) as { gateway_id: string }
}

async function authorizeOnNewConnection(url: string, token: string, body: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${url}/v1/authorize`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', connection: 'close' },
    body: JSON.stringify(body),
  })
  return { status: res.status, body: (await res.json()) as Record<string, unknown> }
}

describe('a gateway with two worker processes', { skip: skipWithoutRedisServer() }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'aegis-workers-'))
  const adminToken = `adm_${randomBytes(24).toString('base64url')}`
  const gatewayToken = `gw_${randomBytes(24).toString('base64url')}`
  const tenant = 'workers'
  let redis: PrivateRedis
  let cp: AegisProcess
  let gw: AegisProcess
  let cred: { client_id: string; client_secret: string }

  const admin = adminCaller(() => cp.url, adminToken)
  const token = (): Promise<string> => clientCredentialsToken(cp.url, cred)

  before(async () => {
    redis = await PrivateRedis.start(await freePort())
    const cpPort = await freePort()
    const issuer = `http://127.0.0.1:${cpPort}`
    const common = { AEGIS_ISSUER: issuer, AEGIS_REDIS_URL: redis.url, AEGIS_GATEWAY_TOKEN: gatewayToken, AEGIS_LOG_LEVEL: 'warn' }
    cp = new AegisProcess('cp', 'control-plane', {
      ...common,
      AEGIS_DATA_DIR: join(dir, 'data'),
      AEGIS_KEK: randomBytes(32).toString('hex'),
      AEGIS_ADMIN_TOKEN: adminToken,
      AEGIS_CONTROL_HOST: '127.0.0.1',
      AEGIS_CONTROL_PORT: String(cpPort),
    })
    await cp.start()
    await admin('POST', '/tenants', { id: tenant, name: 'Workers' })
    await admin('POST', `/tenants/${tenant}/agents`, {
      agent_id: 'worker-bot',
      scopes: ['payments:write'],
      capabilities: ['crm.read', 'payments.transfer'],
      max_ttl_seconds: 900,
    })
    cred = (await admin('POST', `/tenants/${tenant}/agents/worker-bot/bootstrap-credentials`, { ttl_seconds: 3600, single_use: false })) as typeof cred
    const bundle = await admin('POST', `/tenants/${tenant}/policies`, { version: '2026-12-07.1', cedar: TEST_POLICY, mode: 'enforce' })
    await admin('POST', `/tenants/${tenant}/policies/${bundle.id as string}/activate`)
    gw = new AegisProcess('gw', 'gateway', {
      ...common,
      AEGIS_CONTROL_PLANE_URL: cp.url,
      AEGIS_GATEWAY_ID: 'gw',
      AEGIS_GATEWAY_HOST: '127.0.0.1',
      AEGIS_GATEWAY_PORT: String(await freePort()),
      AEGIS_GATEWAY_WORKERS: '2',
    })
    await gw.start()
  })

  after(async () => {
    await gw?.stop()
    await cp?.stop()
    await redis?.stop()
    rmSync(dir, { recursive: true, force: true })
  })

  test('both workers answer on the one port, each under its own gateway id', async () => {
    assert.match(gw.log(), /gateway on http:\/\/127\.0\.0\.1:\d+ \(2 workers\)/)
    const seen = new Set<string>()
    await eventually(async () => {
      seen.add((await healthOnNewConnection(gw.url)).gateway_id)
      return seen.size === 2
    }, 20_000)
    assert.deepEqual([...seen].sort(), ['gw-w1', 'gw-w2'])
  })

  test('a single-use call is single-use across workers, a revocation reaches both, /metrics sums them', async () => {
    const tok = await token()
    const transfer = { action: { tool: 'payments.transfer', params: { amount: 10, currency: 'EUR' } } }
    await eventually(async () => (await authorizeOnNewConnection(gw.url, tok, { action: { tool: 'crm.read' } })).status === 200, 20_000)
    const first = await authorizeOnNewConnection(gw.url, tok, transfer)
    assert.equal(first.body.decision, 'allow', JSON.stringify(first.body))
    // Every later connection, whichever worker takes it, sees the jti as used.
    for (let i = 0; i < 4; i++) {
      const again = await authorizeOnNewConnection(gw.url, tok, transfer)
      assert.equal(again.status, 401, JSON.stringify(again.body))
    }

    const read = await token()
    await admin('POST', '/revocations', { type: 'jti', value: decodeJwt(read).jti, tenant })
    await eventually(async () => {
      const answers = await Promise.all([0, 1, 2, 3].map(() => authorizeOnNewConnection(gw.url, read, { action: { tool: 'crm.read' } })))
      return answers.every((a) => a.status === 401)
    }, 10_000)

    // Decisions were spread over both workers; the sum is what any worker's /metrics answers.
    const text = await (await fetch(`${gw.url}/metrics`)).text()
    const allowed = /aegis_decisions_total\{[^}]*decision="allow"[^}]*\} (\d+)/.exec(text)
    assert.ok(allowed && Number(allowed[1]) >= 2, text.slice(0, 2000))
    assert.match(text, /aegis_deny_list_size \d+/)
  })

  test('a worker that dies is replaced', async () => {
    const before = (await healthOnNewConnection(gw.url)).gateway_id
    const pid = (await (await fetch(`${gw.url}/livez`, { headers: { connection: 'close' } })).json()) as { gateway_id: string }
    assert.ok(pid.gateway_id.startsWith('gw-w'))
    // The primary's children are the workers: kill one the hard way.
    const { execFileSync } = await import('node:child_process')
    const children = execFileSync('pgrep', ['-P', String(gw.pid)])
      .toString()
      .trim()
      .split('\n')
      .map(Number)
    assert.equal(children.length, 2, `workers of ${gw.pid}: ${children.join(', ')}`)
    process.kill(children[0]!, 'SIGKILL')
    await eventually(
      async () => {
        const now = execFileSync('pgrep', ['-P', String(gw.pid)])
          .toString()
          .trim()
          .split('\n')
          .map(Number)
        return now.length === 2 && !now.includes(children[0]!)
      },
      20_000,
      100,
    )
    assert.match(gw.log(), /gateway worker \d exited \(signal SIGKILL\); starting another/)
    assert.ok(before.startsWith('gw-w'))
    const seen = new Set<string>()
    await eventually(async () => {
      seen.add((await healthOnNewConnection(gw.url)).gateway_id)
      return seen.size === 2
    }, 30_000)
  })
})

describe('several gateway workers without Redis', () => {
  test('refuse to start, naming the setting', async () => {
    const r = await runAegis(['serve', '--role', 'gateway', '--workers', '2'], {
      AEGIS_ISSUER: 'http://127.0.0.1:1',
      AEGIS_GATEWAY_TOKEN: 'gw_x',
      AEGIS_GATEWAY_PORT: '0',
    })
    assert.notEqual(r.code, 0)
    assert.match(r.stderr, /2 gateway workers need AEGIS_REDIS_URL/)
  })

  test('--workers is for the gateway role only', async () => {
    const r = await runAegis(['serve', '--role', 'control-plane', '--workers', '2'], { AEGIS_DATA_DIR: mkdtempSync(join(tmpdir(), 'aegis-w-')) })
    assert.equal(r.code, 2)
    assert.match(r.stderr, /--workers applies to --role gateway only/)
  })
})
