import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { decodeJwt, decodeProtectedHeader } from 'jose'
import { authorize, eventually, metricValue, startGatewayEnv, type GatewayEnv, type RunningGateway } from '../../helpers/gateway-env.js'
import { skipWithoutRedis } from '../../helpers/services.js'

const CALL = { action: { tool: 'crm.read', params: {} } }

async function refusedEventually(url: string, token: string): Promise<number> {
  return eventually(async () => (await authorize(url, token, CALL)).status === 401, 10_000, 2)
}

for (const transport of ['sse', 'redis'] as const) {
  describe(`revocations reach the gateway (${transport} feed)`, { skip: transport === 'redis' ? await skipWithoutRedis() : false }, () => {
    let env: GatewayEnv
    let gw: RunningGateway
    let n = 0
    const fresh = async (caps = ['crm.read']): Promise<{ agent: string; token: string; clientId: string }> => {
      const agent = `agent-${++n}`
      const cred = await env.agent(agent, caps)
      const token = await env.token(cred)
      const first = await authorize(gw.url, token, CALL)
      assert.equal(first.body.decision, 'allow', JSON.stringify(first.body))
      return { agent, token, clientId: decodeJwt(token).client_id as string }
    }
    // Tenant-wide revocations poison the tenant for every later token: move on to a fresh one.
    const newTenant = async (): Promise<void> => {
      env.tenant = `${env.tenant}-${n}`
      await env.admin('POST', '/tenants', { id: env.tenant, name: 'next' })
    }
    const revoke = async (body: Record<string, unknown>): Promise<number> => {
      const r = await env.admin('POST', '/revocations', body)
      return r.seq as number
    }

    before(async () => {
      env = await startGatewayEnv({ redis: transport === 'redis' })
      gw = await env.startGateway()
    })
    after(async () => {
      await env?.close()
    })

    test('revoking a jti refuses that token and only that token', async () => {
      const a = await fresh()
      const other = await env.token(
        (await env.admin('POST', `/tenants/${env.tenant}/agents/${a.agent}/bootstrap-credentials`, { ttl_seconds: 600, single_use: false })) as never,
      )
      await revoke({ type: 'jti', value: decodeJwt(a.token).jti, tenant: env.tenant, reason: 'test' })
      await refusedEventually(gw.url, a.token)
      const r = await authorize(gw.url, a.token, CALL)
      assert.equal(r.body.error, 'invalid_token')
      assert.match(r.headers.get('www-authenticate') ?? '', /error="invalid_token"/)
      assert.equal((await authorize(gw.url, other, CALL)).body.decision, 'allow')
    })

    test('revoking an agent refuses its tokens', async () => {
      const a = await fresh()
      const b = await fresh()
      await revoke({ type: 'agent', value: a.agent, tenant: env.tenant })
      await refusedEventually(gw.url, a.token)
      assert.equal((await authorize(gw.url, b.token, CALL)).status, 200)
    })

    test('revoking a client refuses tokens of that client', async () => {
      const a = await fresh()
      await revoke({ type: 'client', value: a.clientId, tenant: env.tenant })
      await refusedEventually(gw.url, a.token)
    })

    test('issued_before (agent-scoped, then tenant-wide) refuses older tokens', async () => {
      const a = await fresh()
      const b = await fresh()
      const iatA = decodeJwt(a.token).iat!
      await revoke({ type: 'issued_before', value: iatA + 1, tenant: env.tenant, agent_id: a.agent })
      await refusedEventually(gw.url, a.token)
      assert.equal((await authorize(gw.url, b.token, CALL)).status, 200, 'other agents are not affected')
      await revoke({ type: 'issued_before', value: decodeJwt(b.token).iat! + 1, tenant: env.tenant })
      await refusedEventually(gw.url, b.token)
      await newTenant()
    })

    test('revoking a tenant refuses its tokens', async () => {
      const a = await fresh()
      await revoke({ type: 'tenant', value: env.tenant })
      await refusedEventually(gw.url, a.token)
      await newTenant()
    })

    test('revoking a kid refuses every token it signed, and the applied seq is acknowledged', async () => {
      const a = await fresh()
      const seq = await revoke({ type: 'kid', value: decodeProtectedHeader(a.token).kid })
      const ms = await refusedEventually(gw.url, a.token)
      assert.ok(ms >= 0)
      assert.ok((await metricValue(gw.url, 'aegis_feed_applied_seq')) >= seq)
      assert.ok((await metricValue(gw.url, 'aegis_deny_list_size')) >= 6)
      await eventually(async () => {
        const r = await env.admin('GET', `/revocations/${seq}`)
        return (r.applied_by as string[]).includes(gw.gw.deps.gatewayId)
      })
    })

    test('a gateway started after the revocations refuses too (it loads the full list first)', async () => {
      const late = await env.startGateway()
      try {
        const text = await (await fetch(`${late.url}/metrics`)).text()
        assert.match(text, /aegis_deny_list_size \d+/)
        assert.ok((await metricValue(late.url, 'aegis_deny_list_size')) >= 6)
      } finally {
        await late.close()
      }
    })
  })
}

describe('Redis feed reconciliation', { skip: await skipWithoutRedis() }, () => {
  test('the periodic check reads the snapshot without its revocations, and a gateway in step loads nothing more', async () => {
    const env = await startGatewayEnv({ redis: true })
    try {
      const cred = await env.agent('steady-bot', ['crm.read'])
      for (let i = 0; i < 30; i++) await env.admin('POST', '/revocations', { type: 'jti', value: `steady-${i}`, tenant: env.tenant })
      const paths: string[] = []
      const record = (req: { url?: string }): void => {
        if (req.url?.startsWith('/admin/v1/feed/snapshot')) paths.push(req.url)
      }
      env.cp.app.server.on('request', record)
      const gw = await env.startGateway({}, { tuning: { ...env.tuning(), feedReconcileMs: 100 } })
      try {
        await eventually(async () => paths.filter((p) => p.includes('summary=true')).length >= 3, 10_000, 50)
        // Full snapshots at start only; from the first check on every read is a summary (nothing was missed, so nothing is reloaded).
        const checks = paths.slice(paths.findIndex((p) => p.includes('summary=true')))
        assert.ok(
          checks.every((p) => p.includes('summary=true')),
          paths.join(' '),
        )
        const token = await env.token(cred)
        assert.equal((await authorize(gw.url, token, CALL)).status, 200)
        assert.ok((await metricValue(gw.url, 'aegis_deny_list_size')) >= 30)
        // The summary carries no revocation, only the seq that stands for them.
        const summary = (await env.admin('GET', '/feed/snapshot?summary=true')) as { summary: Record<string, unknown> }
        assert.deepEqual(Object.keys(summary.summary).sort(), ['agents', 'generatedAt', 'policies', 'seq'])
        assert.ok((summary.summary.seq as number) >= 30)
        // It carries every tenant's agents and bundles: a tenant-scoped token is refused, as for the snapshot itself.
        const { token: tenantAdmin } = (await env.admin('POST', '/admin-tokens', { tenant: env.tenant, role: 'admin', name: 'summary-probe' })) as {
          token: string
        }
        const refused = await fetch(`${env.issuer}/admin/v1/feed/snapshot?summary=true`, { headers: { authorization: `Bearer ${tenantAdmin}` } })
        assert.equal(refused.status, 403)
        assert.equal(((await refused.json()) as { error: string }).error, 'forbidden')
      } finally {
        env.cp.app.server.off('request', record)
        await gw.close()
      }
    } finally {
      await env.close()
    }
  })

  test("a gateway that hears nothing on its Redis channel still converges on the control plane's revocations", async () => {
    const env = await startGatewayEnv({ redis: true })
    try {
      // Misconfigured on purpose: the control plane publishes under another prefix than the gateway follows.
      const gw = await env.startGateway(
        {},
        { tuning: { feedChannel: `${env.prefix}elsewhere:feed`, feedHashKey: `${env.prefix}elsewhere:revocations`, feedReconcileMs: 200 } },
      )
      // An agent registered after the gateway started: only reconciliation can tell the gateway about it.
      const cred = await env.agent('quiet-bot', ['crm.read', 'crm.update'])
      const token = await env.token(cred)
      await eventually(async () => (await authorize(gw.url, token, CALL)).status === 200)
      await env.admin('POST', '/revocations', { type: 'jti', value: decodeJwt(token).jti, tenant: env.tenant })
      await refusedEventually(gw.url, token)
      // A capability change (no revocation seq involved) is caught too: the old token stops working.
      const other = await env.token(cred)
      assert.equal((await authorize(gw.url, other, CALL)).status, 200)
      await env.admin('PATCH', `/tenants/${env.tenant}/agents/quiet-bot`, { capabilities: ['crm.read'] })
      await refusedEventually(gw.url, other)
    } finally {
      await env.close()
    }
  })
})
