/**
 * Issue 14 item 2 on real processes: two control planes on one PostgreSQL,
 * two gateways on one Redis (gateway 1 follows control plane A, gateway 2
 * follows B), under steady issuance and decision load.
 * - Emergency rotation on A: tokens of the new key are accepted by both
 *   gateways, the old key is refused by both, and B signs with the new key,
 *   each well within 10 s (the 1 s p99 goal is printed, not asserted).
 * - Scheduled-style rotation on B: not one valid token refused.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { decodeProtectedHeader } from 'jose'
import { freePort } from '../../helpers/ports.js'
import { startControlPlaneProcess, type ControlPlaneProcess } from '../../helpers/control-plane-processes.js'
import { startGatewayProcess, type GatewayProcess } from '../../helpers/gateway-processes.js'
import { freshPostgresSchema, REDIS_URL, redisPrefix, skipWithoutPostgres, skipWithoutRedis } from '../../helpers/services.js'

const CALL = JSON.stringify({ action: { tool: 'crm.read' } })
const ROUNDS = 10

interface Cred {
  client_id: string
  client_secret: string
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] ?? NaN
}

async function authorize(gw: string, token: string): Promise<number> {
  const res = await fetch(`${gw}/v1/authorize`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: CALL,
  })
  await res.arrayBuffer()
  return res.status
}

/** Polls `ok` every 2 ms until true; resolves with the ms elapsed since `since`; rejects after 10 s. */
async function until(since: number, ok: () => Promise<boolean>): Promise<number> {
  for (;;) {
    if (await ok()) return performance.now() - since
    if (performance.now() - since > 10_000) throw new Error('not within 10 s')
    await new Promise((r) => setTimeout(r, 2))
  }
}

interface Cluster {
  A: string
  B: string
  gws: GatewayProcess[]
  admin(cp: string, method: string, path: string, body?: unknown): Promise<Record<string, unknown>>
  token(cp: string): Promise<{ token: string; kid: string }>
  /** Steady load: tokens from both control planes, each presented to both gateways. */
  load(): { stop(): Promise<Call[]> }
  close(): Promise<void>
}

interface Call {
  kid: string
  status: number
  gw: number
  at: number
}

/**
 * Control planes A (the issuer's port) and B on a fresh PostgreSQL schema,
 * feed on Redis under a fresh prefix; gateway 0 follows A, gateway 1 follows B.
 */
async function startCluster(timings: Record<string, unknown>): Promise<Cluster> {
  const schema = await freshPostgresSchema()
  const cps: ControlPlaneProcess[] = []
  const gws: GatewayProcess[] = []
  const adminToken = `adm_${randomBytes(24).toString('base64url')}`
  const tenant = `t-${randomBytes(4).toString('hex')}`
  const prefix = redisPrefix()
  const port = await freePort()
  const issuer = `http://127.0.0.1:${port}`
  const gatewayToken = `gw_${randomBytes(24).toString('base64url')}`
  let cred: Cred | undefined
  const admin = async (cp: string, method: string, path: string, body?: unknown): Promise<Record<string, unknown>> => {
    const res = await fetch(`${cp}/admin/v1${path}`, {
      method,
      headers: { authorization: `Bearer ${adminToken}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    })
    const text = await res.text()
    if (!res.ok) throw new Error(`${method} ${path} answered ${res.status}: ${text}`)
    return text ? (JSON.parse(text) as Record<string, unknown>) : {}
  }
  const token = async (cp: string): Promise<{ token: string; kid: string }> => {
    const res = await fetch(`${cp}/oauth2/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'client_credentials', client_id: cred!.client_id, client_secret: cred!.client_secret }),
    })
    const body = (await res.json()) as { access_token?: string }
    if (!res.ok || !body.access_token) throw new Error(`token endpoint answered ${res.status}: ${JSON.stringify(body)}`)
    return { token: body.access_token, kid: decodeProtectedHeader(body.access_token).kid as string }
  }
  const close = async (): Promise<void> => {
    await Promise.all(gws.map((g) => g.stop()))
    await Promise.all(cps.map((c) => c.stop()))
    await schema.drop()
  }
  try {
    const logLevel = process.env.AEGIS_TEST_CHILD_LOGS === '1' ? 'info' : 'silent'
    const base = {
      issuer,
      databaseUrl: schema.url,
      redisUrl: REDIS_URL,
      kek: randomBytes(32).toString('hex'),
      adminToken,
      gatewayToken,
      logLevel,
      rateLimit: { perClient: 1_000_000, perIp: 10_000_000 },
      ...timings,
    }
    cps.push(await startControlPlaneProcess({ ...base, instanceId: `cp-a-${tenant}` }, { port, redisPrefix: prefix }))
    cps.push(await startControlPlaneProcess({ ...base, instanceId: `cp-b-${tenant}` }, { redisPrefix: prefix }))
    const [A, B] = [cps[0]!.url, cps[1]!.url]
    await admin(A, 'POST', '/tenants', { id: tenant, name: 'Rotation' })
    await admin(A, 'POST', `/tenants/${tenant}/agents`, { agent_id: 'rot-bot', scopes: ['crm:read'], capabilities: ['crm.read'], max_ttl_seconds: 900 })
    cred = (await admin(A, 'POST', `/tenants/${tenant}/agents/rot-bot/bootstrap-credentials`, { ttl_seconds: 3600, single_use: false })) as unknown as Cred
    const tuning = { feedChannel: `${prefix}aegis:feed`, feedHashKey: `${prefix}aegis:revocations`, redisKeyPrefix: `${prefix}jti:` }
    for (const [i, cp] of [A, B].entries()) {
      gws.push(
        await startGatewayProcess({ issuer, controlPlaneUrl: cp, gatewayToken, redisUrl: REDIS_URL, logLevel, gateway: { id: `gw-${i}-${tenant}` } }, tuning),
      )
    }
    // Both gateways decide for tokens of both control planes before anything changes.
    for (const cp of [A, B]) {
      const t = await token(cp)
      for (const g of gws) assert.equal(await authorize(g.url, t.token), 200)
    }
    const load = (): { stop(): Promise<Call[]> } => {
      const calls: Call[] = []
      let running = true
      const worker = async (i: number): Promise<void> => {
        for (let n = 0; running; n++) {
          const t = await token(n % 2 === i % 2 ? A : B).catch(() => null)
          if (!t) continue
          await Promise.all(
            gws.map(async (g, gi) => {
              calls.push({ kid: t.kid, status: await authorize(g.url, t.token), gw: gi, at: performance.now() })
            }),
          )
          await new Promise((r) => setTimeout(r, 5))
        }
      }
      const workers = [0, 1, 2, 3].map(worker)
      return {
        stop: async () => {
          running = false
          await Promise.all(workers)
          return calls
        },
      }
    }
    return { A, B, gws, admin, token, load, close }
  } catch (err) {
    await close()
    throw err
  }
}

const services = (await skipWithoutPostgres()) || (await skipWithoutRedis())

describe('emergency rotation across two control planes (PostgreSQL) and two gateways (Redis)', { skip: services }, () => {
  let c: Cluster
  // Long enough that neither a gateway's scheduled JWKS refresh nor a control plane's key check runs during the test: only the push can make it.
  before(async () => {
    c = await startCluster({ keys: { prePublishSeconds: 120, checkIntervalSeconds: 60 }, jwks: { maxAgeSeconds: 120 } })
  })
  after(async () => {
    await c?.close()
  })

  test('new-key tokens are accepted by every gateway, the old key is refused everywhere, and the other control plane signs with the new key', async () => {
    const { A, B, gws, admin, token } = c
    const accepted: number[] = []
    const refused: number[] = []
    const otherSigns: number[] = []
    let oldFromOther = 0
    const l = c.load()
    const revoked = new Set<string>()
    try {
      for (let i = 0; i < ROUNDS; i++) {
        const old = await token(A)
        const r = await admin(A, 'POST', '/keys/rotate?emergency=true')
        const answered = performance.now()
        const newKid = r.current as string
        assert.equal(r.revoked, old.kid)
        revoked.add(old.kid)
        const [fresh, otherSwitch, oldRefused] = await Promise.all([
          token(A),
          until(answered, async () => {
            const t = await token(B)
            if (t.kid === old.kid) oldFromOther++
            return t.kid === newKid
          }),
          Promise.all(gws.map((g) => until(answered, async () => (await authorize(g.url, old.token)) === 401))),
        ])
        assert.equal(fresh.kid, newKid)
        const each = await Promise.all(gws.map((g) => until(answered, async () => (await authorize(g.url, fresh.token)) === 200)))
        accepted.push(Math.max(...each))
        refused.push(Math.max(...oldRefused))
        otherSigns.push(otherSwitch)
      }
    } finally {
      const calls = await l.stop()
      const validRefused = calls.filter((x) => x.status !== 200 && !revoked.has(x.kid)).length
      console.log(
        `# load during ${ROUNDS} emergency rotations: ${calls.length} calls, ${calls.filter((x) => x.status === 200).length} ` +
          `allowed, ${validRefused} refusals of a token whose key was not revoked`,
      )
    }
    console.log(
      `# emergency rotation -> new key accepted at every gateway: p50 ${pct(accepted, 50).toFixed(1)} ms, p99 ${pct(accepted, 99).toFixed(1)} ms ` +
        `(goal p99 < 1000 ms; ${ROUNDS} rotations, from the rotation's answer)`,
    )
    console.log(`# emergency rotation -> old key refused at every gateway: p50 ${pct(refused, 50).toFixed(1)} ms, p99 ${pct(refused, 99).toFixed(1)} ms`)
    console.log(
      `# emergency rotation -> other control plane signs with the new key: p50 ${pct(otherSigns, 50).toFixed(1)} ms, p99 ${pct(otherSigns, 99).toFixed(1)} ms`,
    )
    assert.equal(oldFromOther, 0, 'no token asked of the other control plane after the answer carries the revoked kid')
  })
})

describe('scheduled rotation across two control planes (PostgreSQL) and two gateways (Redis)', { skip: services }, () => {
  let c: Cluster
  // A 3 s pre-publication, shorter than a gateway's JWKS refresh floor (5 s): without the push, gateways may meet the new kid before they fetched it.
  before(async () => {
    c = await startCluster({ keys: { prePublishSeconds: 3, checkIntervalSeconds: 1 }, jwks: { maxAgeSeconds: 1 } })
  })
  after(async () => {
    await c?.close()
  })

  test('a scheduled rotation under steady load refuses no valid token', async () => {
    const l = c.load()
    let calls: Call[] = []
    let nextKid = ''
    try {
      await new Promise((r) => setTimeout(r, 500))
      // On B this time: A hears of the new key through the cluster signal.
      const r = await c.admin(c.B, 'POST', '/keys/rotate')
      nextKid = r.next as string
      const next = (r.keys as Array<{ kid: string; activates_at: number }>).find((k) => k.kid === nextKid)!
      // Keep the load on until 2 s after the new key started signing.
      await new Promise((res) => setTimeout(res, Math.max(0, next.activates_at * 1000 - Date.now()) + 2_000))
    } finally {
      calls = await l.stop()
    }
    const refusals = calls.filter((x) => x.status !== 200)
    const withNext = calls.filter((x) => x.kid === nextKid)
    console.log(`# scheduled rotation under load: ${calls.length} calls, ${refusals.length} refused, ${withNext.length} with the new key`)
    for (const gi of [0, 1])
      assert.ok(
        withNext.some((x) => x.gw === gi && x.status === 200),
        `gateway ${gi} accepted the new key`,
      )
    assert.equal(refusals.length, 0, `refused: ${JSON.stringify(refusals.slice(0, 5))}`)
  })
})
