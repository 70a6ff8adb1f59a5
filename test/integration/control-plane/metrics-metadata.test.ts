/**
 * Smaller leaks and mismatches (issue 14 item 7): an open GET /metrics names
 * no tenant unless the operator opts in, and can require a bearer token on
 * both roles; the RFC 8414 metadata offers tls_client_auth only where a
 * client certificate can arrive (RFC 8705 §5).
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { startGatewayEnv } from '../../helpers/gateway-env.js'
import { basic, form, seedAgent, startControlPlane, type Harness } from './harness.js'

async function withControlPlane(overrides: Record<string, unknown>, fn: (h: Harness) => Promise<void>): Promise<void> {
  const h = await startControlPlane({ overrides })
  try {
    await fn(h)
  } finally {
    await h.close()
  }
}

/** Status of a GET, the body read (an unread body holds the connection open). */
async function statusOf(url: string, authorization?: string): Promise<number> {
  const res = await fetch(url, authorization ? { headers: { authorization } } : {})
  await res.text()
  return res.status
}

async function mintFor(h: Harness, tenant: string): Promise<void> {
  const s = await seedAgent(h, { tenant })
  const r = await form(h, '/oauth2/token', { grant_type: 'client_credentials' }, { authorization: basic(s.clientId, s.secret) })
  assert.equal(r.status, 200, r.text)
}

describe('GET /metrics', () => {
  test('names no tenant by default', async () => {
    await withControlPlane({}, async (h) => {
      await mintFor(h, 'secret-customer-name')
      const m = await (await fetch(`${h.url}/metrics`)).text()
      assert.match(m, /aegis_tokens_issued_total\{grant="client_credentials"\} 1/)
      assert.doesNotMatch(m, /tenant=/)
      assert.ok(!m.includes('secret-customer-name'))
    })
  })

  test('labels tokens issued with the tenant when metrics.tenantLabels is on', async () => {
    await withControlPlane({ metrics: { tenantLabels: true } }, async (h) => {
      await mintFor(h, 'acme')
      const m = await (await fetch(`${h.url}/metrics`)).text()
      assert.match(m, /aegis_tokens_issued_total\{tenant="acme",grant="client_credentials"\} 1/)
    })
  })

  test('with metrics.token, both roles answer only to that bearer token', async () => {
    const token = 'metrics-scraper-token-0123456789'
    const env = await startGatewayEnv({ overrides: { metrics: { token } } })
    try {
      const gw = await env.startGateway()
      for (const url of [env.issuer, gw.url]) {
        const open = await fetch(`${url}/metrics`)
        assert.equal(open.status, 401, url)
        assert.equal(((await open.json()) as { error: string }).error, 'unauthorized')
        assert.match(open.headers.get('www-authenticate') ?? '', /^Bearer/)
        assert.equal(await statusOf(`${url}/metrics`, 'Bearer not-the-metrics-token-000000'), 401, url)
        assert.equal(await statusOf(`${url}/metrics`, `Bearer ${env.adminToken}`), 401, 'an admin token is not the metrics token')
        const ok = await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${token}` } })
        assert.equal(ok.status, 200, url)
        assert.match(await ok.text(), /aegis_/)
      }
      // Health checks stay open.
      assert.equal(await statusOf(`${env.issuer}/healthz`), 200)
    } finally {
      await env.close()
    }
  })
})

describe('RFC 8414 metadata and tls_client_auth', () => {
  const metadata = async (h: Harness): Promise<Record<string, unknown>> =>
    (await (await fetch(`${h.url}/.well-known/oauth-authorization-server`)).json()) as Record<string, unknown>

  test('an http issuer without a TLS listener does not offer tls_client_auth', async () => {
    await withControlPlane({}, async (h) => {
      const m = await metadata(h)
      for (const field of [
        'token_endpoint_auth_methods_supported',
        'revocation_endpoint_auth_methods_supported',
        'introspection_endpoint_auth_methods_supported',
      ]) {
        const methods = m[field] as string[]
        assert.ok(methods.includes('client_secret_basic'), field)
        assert.ok(!methods.includes('tls_client_auth'), field)
        assert.ok(!methods.includes('self_signed_tls_client_auth'), field)
      }
      assert.equal(m.mtls_endpoint_aliases, undefined)
      assert.equal(m.tls_client_certificate_bound_access_tokens, undefined)
    })
  })

  test('an https token endpoint (TLS terminated in front) offers it', async () => {
    await withControlPlane({ issuer: 'https://aegis.example.com' }, async (h) => {
      const m = await metadata(h)
      assert.equal(m.token_endpoint, 'https://aegis.example.com/oauth2/token')
      assert.ok((m.token_endpoint_auth_methods_supported as string[]).includes('tls_client_auth'))
    })
  })
})
