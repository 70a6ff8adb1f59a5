/**
 * Liveness and readiness of the control plane: a real PostgreSQL reached
 * through a real TCP relay that the test cuts (a network partition between
 * this control plane and its database; the shared server is never stopped).
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { eventually } from '../../helpers/gateway-env.js'
import { freshPostgresSchema, POSTGRES_URL, skipWithoutPostgres } from '../../helpers/services.js'
import { TcpRelay } from '../../helpers/tcp-relay.js'
import { PrivatePostgres, skipWithoutInitdb } from '../../helpers/postgres-server.js'
import { startControlPlane } from './harness.js'

interface Ready {
  status: string
  reasons: string[]
  store: string
}

async function readyz(url: string): Promise<{ status: number; body: Ready }> {
  const res = await fetch(`${url}/readyz`)
  return { status: res.status, body: (await res.json()) as Ready }
}

const noPostgres = await skipWithoutPostgres()
const noPostgresBinaries = skipWithoutInitdb()

describe('control plane /livez and /readyz', () => {
  test('an embedded (SQLite) control plane is ready and alive', async () => {
    const h = await startControlPlane()
    try {
      const r = await readyz(h.url)
      assert.equal(r.status, 200)
      assert.deepEqual({ status: r.body.status, reasons: r.body.reasons, store: r.body.store }, { status: 'ready', reasons: [], store: 'sqlite' })
      assert.equal((await fetch(`${h.url}/livez`)).status, 200)
    } finally {
      await h.close()
    }
  })

  test('PostgreSQL unreachable: not ready (503, database_unreachable) yet alive; ready again once it answers', { skip: noPostgres }, async () => {
    const schema = await freshPostgresSchema()
    const relay = await TcpRelay.start(Number(new URL(POSTGRES_URL).port || 5432))
    const url = new URL(schema.url)
    url.port = String(relay.port)
    const h = await startControlPlane({ databaseUrl: url.toString() })
    try {
      assert.equal((await readyz(h.url)).status, 200)
      relay.cut()
      await eventually(async () => (await readyz(h.url)).status === 503)
      const r = await readyz(h.url)
      assert.equal(r.body.status, 'not_ready')
      assert.match(r.body.reasons[0] ?? '', /^database_unreachable/)
      assert.ok(!JSON.stringify(r.body).includes('postgres@'), 'no connection details in the answer')
      assert.equal((await fetch(`${h.url}/livez`)).status, 200, 'alive: restarting it would not bring the database back')
      relay.heal()
      await eventually(async () => (await readyz(h.url)).status === 200)
      const tenants = await fetch(`${h.url}/admin/v1/tenants`, {
        method: 'POST',
        headers: { authorization: `Bearer ${h.adminToken}`, 'content-type': 'application/json' },
        body: JSON.stringify({ id: 'after-cut', name: 'After the cut' }),
      })
      assert.equal(tenants.status, 201, 'and serving again')
    } finally {
      relay.heal()
      await h.close()
      await relay.close()
      await schema.drop()
    }
  })

  test('a private PostgreSQL cluster stopped (-m immediate) and started again: not ready while it is down, token requests 503 with Retry-After, ' +
    'ready and issuing after', {
    skip: noPostgresBinaries,
  }, async () => {
    const pg = await PrivatePostgres.start()
    let h: Awaited<ReturnType<typeof startControlPlane>> | undefined
    try {
      h = await startControlPlane({ databaseUrl: pg.url })
      assert.equal((await readyz(h.url)).status, 200)
      const admin = async (path: string, body: unknown): Promise<Record<string, unknown>> => {
        const res = await fetch(`${h!.url}/admin/v1${path}`, {
          method: 'POST',
          headers: { authorization: `Bearer ${h!.adminToken}`, 'content-type': 'application/json' },
          body: JSON.stringify(body),
        })
        assert.equal(res.status, 201, path)
        return (await res.json()) as Record<string, unknown>
      }
      await admin('/tenants', { id: 'pg-outage', name: 'PG outage' })
      await admin('/tenants/pg-outage/agents', { agent_id: 'pg-bot', scopes: ['crm:read'], capabilities: ['crm.read'] })
      const cred = await admin('/tenants/pg-outage/agents/pg-bot/bootstrap-credentials', { ttl_seconds: 3600, single_use: false })
      const tokenRequest = (): Promise<Response> =>
        fetch(`${h!.url}/oauth2/token`, {
          method: 'POST',
          headers: {
            'content-type': 'application/x-www-form-urlencoded',
            authorization: `Basic ${Buffer.from(`${String(cred.client_id)}:${String(cred.client_secret)}`).toString('base64')}`,
          },
          body: 'grant_type=client_credentials',
        })
      assert.equal((await tokenRequest()).status, 200)
      await pg.stop('immediate')
      await eventually(async () => (await readyz(h!.url)).status === 503)
      assert.match((await readyz(h.url)).body.reasons[0] ?? '', /^database_unreachable/)
      assert.equal((await fetch(`${h.url}/livez`)).status, 200)
      const refused = await tokenRequest()
      assert.equal(refused.status, 503, 'no token without its audit event')
      assert.equal(((await refused.json()) as { error: string }).error, 'temporarily_unavailable')
      assert.ok(Number(refused.headers.get('retry-after')) >= 1, 'an outage answers with Retry-After')
      await pg.start()
      await eventually(async () => (await readyz(h!.url)).status === 200)
      assert.equal((await tokenRequest()).status, 200)
      const res = await fetch(`${h.url}/admin/v1/tenants`, {
        method: 'POST',
        headers: { authorization: `Bearer ${h.adminToken}`, 'content-type': 'application/json' },
        body: JSON.stringify({ id: 'after-restart', name: 'After the restart' }),
      })
      assert.equal(res.status, 201)
    } finally {
      await h?.close()
      await pg.close()
    }
  })
})
