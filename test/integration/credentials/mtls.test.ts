import { describe, test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { X509Certificate } from 'node:crypto'
import { decodeJwt } from 'jose'
import { certThumbprint } from '../../../src/lib/x509.js'
import { asn1Time, makeLeaf, type Issued } from './pki.js'
import { startCredentialEnv, tenantId, type CredentialEnv } from './harness.js'

const SPIFFE = 'spiffe://acme.test/ns/prod/sa/billing-agent'

describe('tls_client_auth and certificate-bound tokens (RFC 8705)', () => {
  let env: CredentialEnv
  let foreign: Issued
  const tenant = tenantId()
  let spiffeAgent: string
  let dnAgent: string
  let good: Issued
  let dnCert: Issued

  before(async () => {
    env = await startCredentialEnv()
    await env.admin('POST', '/tenants', { id: tenant, name: 'mTLS tenant' })
    spiffeAgent = (
      await env.admin('POST', `/tenants/${tenant}/agents`, {
        agent_id: 'billing',
        scopes: ['crm:read'],
        capabilities: ['crm.read'],
        token_endpoint_auth_method: 'tls_client_auth',
        tls_client_auth_san_uri: SPIFFE,
      })
    ).client_id
    dnAgent = (
      await env.admin('POST', `/tenants/${tenant}/agents`, {
        agent_id: 'reports',
        scopes: ['crm:read'],
        capabilities: ['crm.read'],
        token_endpoint_auth_method: 'tls_client_auth',
        tls_client_auth_subject_dn: 'CN=reports-agent,O=Acme',
      })
    ).client_id
    good = makeLeaf(env.pki.ca, 'billing', { subject: '/CN=billing-agent/O=Acme', san: [`URI:${SPIFFE}`] })
    dnCert = makeLeaf(env.pki.ca, 'reports', { subject: '/CN=reports-agent/O=Acme' })
    foreign = makeLeaf(env.pki.otherCa, 'billing-elsewhere', { subject: '/CN=billing-agent/O=Acme', san: [`URI:${SPIFFE}`] })
  })
  after(async () => {
    await env.close()
  })

  const token = (o: { clientId: string; cert?: Issued; url?: string }) =>
    env.form(`${o.url ?? env.tlsUrl}/oauth2/token`, { grant_type: 'client_credentials', client_id: o.clientId }, o.cert ? { cert: o.cert } : {})

  test('metadata advertises the mTLS aliases and certificate-bound tokens', async () => {
    const r = await env.call(`${env.url}/.well-known/oauth-authorization-server`)
    assert.equal(r.body.tls_client_certificate_bound_access_tokens, true)
    assert.equal(r.body.mtls_endpoint_aliases.token_endpoint, `${env.tlsUrl}/oauth2/token`)
    assert.ok(r.body.token_endpoint_auth_methods_supported.includes('tls_client_auth'))
  })

  test('a certificate from the tenant CA with the pinned SPIFFE ID gets a token bound to it', async () => {
    const r = await token({ clientId: spiffeAgent, cert: good })
    assert.equal(r.status, 200, r.text)
    assert.equal(r.body.token_type, 'Bearer')
    const claims = decodeJwt(r.body.access_token)
    assert.deepEqual(claims.cnf, { 'x5t#S256': certThumbprint(new X509Certificate(good.certPem)) })
    assert.equal(claims.client_id, spiffeAgent)
    const issued = (await env.events('token.issued')).find((e) => e.data.jti === claims.jti)
    assert.ok(issued)
    assert.deepEqual(issued.data.cnf, claims.cnf)
  })

  test('the pinned subject DN authenticates', async () => {
    const r = await token({ clientId: dnAgent, cert: dnCert })
    assert.equal(r.status, 200, r.text)
  })

  test('a valid certificate that is not the one pinned is refused', async () => {
    const r = await token({ clientId: dnAgent, cert: good })
    assert.equal(r.status, 401)
    assert.equal(r.body.error, 'invalid_client')
    const failed = (await env.events('auth.failed')).filter((e) => e.data.reason === 'bad_certificate')
    assert.ok(failed.length >= 1)
  })

  test('an expired certificate is refused', async () => {
    const day = 86_400_000
    const expired = makeLeaf(env.pki.ca, 'expired', {
      subject: '/CN=billing-agent/O=Acme',
      san: [`URI:${SPIFFE}`],
      startDate: asn1Time(new Date(Date.now() - 10 * day)),
      endDate: asn1Time(new Date(Date.now() - day)),
    })
    const r = await token({ clientId: spiffeAgent, cert: expired })
    assert.equal(r.status, 401)
    assert.equal(r.body.error, 'invalid_client')
  })

  test('a certificate from another CA is refused, even with the pinned SPIFFE ID', async () => {
    const r = await token({ clientId: spiffeAgent, cert: foreign })
    assert.equal(r.status, 401)
    assert.equal(r.body.error, 'invalid_client')
  })

  test('no certificate (TLS without one, or plain HTTP) is refused', async () => {
    const a = await token({ clientId: spiffeAgent })
    assert.equal(a.status, 401)
    assert.equal(a.body.error, 'invalid_client')
    const b = await token({ clientId: spiffeAgent, url: env.url })
    assert.equal(b.status, 401)
  })

  test('a bootstrap secret over mTLS gets a certificate-bound token', async () => {
    await env.admin('POST', `/tenants/${tenant}/agents`, { agent_id: 'plain', scopes: ['crm:read'], capabilities: ['crm.read'] })
    const cred = await env.admin('POST', `/tenants/${tenant}/agents/plain/bootstrap-credentials`, { ttl_seconds: 600, single_use: false })
    const r = await env.form(
      `${env.tlsUrl}/oauth2/token`,
      { grant_type: 'client_credentials', client_id: cred.client_id, client_secret: cred.client_secret },
      { cert: good },
    )
    assert.equal(r.status, 200, r.text)
    assert.deepEqual(decodeJwt(r.body.access_token).cnf, { 'x5t#S256': certThumbprint(new X509Certificate(good.certPem)) })
    const plain = await env.form(`${env.url}/oauth2/token`, { grant_type: 'client_credentials', client_id: cred.client_id, client_secret: cred.client_secret })
    assert.equal(plain.status, 200)
    assert.equal(decodeJwt(plain.body.access_token).cnf, undefined)
  })
})

describe('per-tenant client CA bundles and certificates from a TLS-terminating proxy', () => {
  let env: CredentialEnv
  const t1 = tenantId()
  const t2 = tenantId()
  let a1: string
  let a2: string

  before(async () => {
    env = await startCredentialEnv({
      tls: (pki) => ({ tenantClientCas: { [t2]: pki.otherCa.certFile }, trustedProxies: ['127.0.0.2'], clientCertHeader: 'x-forwarded-client-cert' }),
    })
    for (const [t, id] of [
      [t1, 'a1'],
      [t2, 'a2'],
    ] as const) {
      await env.admin('POST', '/tenants', { id: t, name: t })
      const r = await env.admin('POST', `/tenants/${t}/agents`, {
        agent_id: id,
        scopes: ['crm:read'],
        capabilities: ['crm.read'],
        token_endpoint_auth_method: 'tls_client_auth',
        tls_client_auth_san_dns: `${id}.acme.test`,
      })
      if (t === t1) a1 = r.client_id
      else a2 = r.client_id
    }
  })
  after(async () => {
    await env.close()
  })

  test("each tenant's agents authenticate only with certificates from that tenant's CA", async () => {
    const otherCa = env.pki.otherCa
    const t1cert = makeLeaf(env.pki.ca, 'a1', { subject: '/CN=a1', san: ['DNS:a1.acme.test'] })
    const t2cert = makeLeaf(otherCa, 'a2', { subject: '/CN=a2', san: ['DNS:a2.acme.test'] })
    const t2wrong = makeLeaf(env.pki.ca, 'a2-wrong-ca', { subject: '/CN=a2', san: ['DNS:a2.acme.test'] })
    const ok1 = await env.form(`${env.tlsUrl}/oauth2/token`, { grant_type: 'client_credentials', client_id: a1 }, { cert: t1cert })
    assert.equal(ok1.status, 200, ok1.text)
    const ok2 = await env.form(`${env.tlsUrl}/oauth2/token`, { grant_type: 'client_credentials', client_id: a2 }, { cert: t2cert })
    assert.equal(ok2.status, 200, ok2.text)
    const bad = await env.form(`${env.tlsUrl}/oauth2/token`, { grant_type: 'client_credentials', client_id: a2 }, { cert: t2wrong })
    assert.equal(bad.status, 401)
  })

  test('a forwarded certificate counts only from a trusted proxy address (Envoy XFCC and nginx escaped PEM)', async () => {
    const cert = makeLeaf(env.pki.ca, 'a1-proxied', { subject: '/CN=a1', san: ['DNS:a1.acme.test'] })
    const xfcc = `By=spiffe://proxy;Hash=abc;Cert="${encodeURIComponent(cert.certPem)}";Subject="CN=a1"`
    const trusted = await env.form(
      `${env.url}/oauth2/token`,
      { grant_type: 'client_credentials', client_id: a1 },
      { headers: { 'x-forwarded-client-cert': xfcc }, localAddress: '127.0.0.2' },
    )
    assert.equal(trusted.status, 200, trusted.text)
    assert.deepEqual(decodeJwt(trusted.body.access_token).cnf, { 'x5t#S256': certThumbprint(new X509Certificate(cert.certPem)) })
    const nginx = await env.form(
      `${env.url}/oauth2/token`,
      { grant_type: 'client_credentials', client_id: a1 },
      { headers: { 'x-forwarded-client-cert': encodeURIComponent(cert.certPem) }, localAddress: '127.0.0.2' },
    )
    assert.equal(nginx.status, 200, nginx.text)
    const untrusted = await env.form(
      `${env.url}/oauth2/token`,
      { grant_type: 'client_credentials', client_id: a1 },
      { headers: { 'x-forwarded-client-cert': xfcc } },
    )
    assert.equal(untrusted.status, 401)
    assert.equal(untrusted.body.error, 'invalid_client')
  })
})
