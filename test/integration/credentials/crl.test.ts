/**
 * Revoked client certificates (RFC 5280 CRLs) at the token endpoint's
 * tls_client_auth: a certificate a configured CRL lists is refused with
 * invalid_client (RFC 8705 §2), globally and per tenant; CRLs and CA bundles
 * are reloaded when their files change, without a restart. Certificates and
 * CRLs are made in the test with the openssl CLI.
 */
import { describe, test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { X509Certificate } from 'node:crypto'
import { copyFileSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { makeLeaf, type Ca, type Issued } from './pki.js'
import { startCredentialEnv, tenantId, type CredentialEnv } from './harness.js'

function ossl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] })
}

/** Marks `cert` revoked in the CA's database. */
function revoke(ca: Ca, cert: Issued): void {
  ossl(['ca', '-batch', '-config', 'ca.cnf', '-revoke', cert.certFile, '-crl_reason', 'keyCompromise'], ca.dir)
}

/** The CA's current CRL (PEM). */
function crlOf(ca: Ca): string {
  const out = join(ca.dir, `crl-${Date.now()}-${Math.random().toString(36).slice(2)}.pem`)
  ossl(['ca', '-batch', '-config', 'ca.cnf', '-gencrl', '-crldays', '7', '-out', out], ca.dir)
  return readFileSync(out, 'utf8')
}

describe('tls_client_auth against CRLs, reloaded when the files change', () => {
  let env: CredentialEnv
  let globalCrl = ''
  let tenantCrl = ''
  let bundle = ''
  const tenant = tenantId()
  const strict = tenantId() // has its own CRL on top of the global one
  const bundled = tenantId() // has its own CA bundle file
  const missing = tenantId() // its CRL file does not exist yet

  before(async () => {
    env = await startCredentialEnv({
      tls: ({ ca }) => {
        globalCrl = join(ca.dir, 'global-crl.pem')
        tenantCrl = join(ca.dir, 'tenant-crl.pem')
        bundle = join(ca.dir, 'bundle.pem')
        // Nothing revoked yet: empty CRLs from the CA.
        writeFileSync(globalCrl, crlOf(ca))
        writeFileSync(tenantCrl, crlOf(ca))
        copyFileSync(ca.certFile, bundle)
        return {
          clientCrl: globalCrl,
          tenantClientCrls: { [strict]: tenantCrl, [missing]: join(ca.dir, 'not-yet.pem') },
          tenantClientCas: { [bundled]: bundle },
          fileCheckSeconds: 0,
        }
      },
    })
    for (const t of [tenant, strict, bundled, missing]) await env.admin('POST', '/tenants', { id: t, name: t })
  })
  after(async () => {
    await env.close()
  })

  async function agentFor(t: string, name: string, cert: Issued): Promise<string> {
    const subject = new X509Certificate(cert.certPem).subject.split('\n').join(',')
    return (
      await env.admin('POST', `/tenants/${t}/agents`, {
        agent_id: name,
        scopes: ['crm:read'],
        capabilities: ['crm.read'],
        token_endpoint_auth_method: 'tls_client_auth',
        tls_client_auth_subject_dn: subject,
      })
    ).client_id as string
  }
  const token = (clientId: string, cert: Issued) => env.form(`${env.tlsUrl}/oauth2/token`, { grant_type: 'client_credentials', client_id: clientId }, { cert })

  test('a certificate the CRL lists is refused with invalid_client once the CRL file changes; others of the same CA still authenticate', async () => {
    const stolen = makeLeaf(env.pki.ca, 'stolen', { subject: '/CN=stolen-agent/O=Acme' })
    const other = makeLeaf(env.pki.ca, 'other', { subject: '/CN=other-agent/O=Acme' })
    const stolenId = await agentFor(tenant, 'stolen', stolen)
    const otherId = await agentFor(tenant, 'other', other)
    assert.equal((await token(stolenId, stolen)).status, 200)

    revoke(env.pki.ca, stolen)
    writeFileSync(globalCrl, crlOf(env.pki.ca)) // rewritten in place
    const refused = await token(stolenId, stolen)
    assert.equal(refused.status, 401, refused.text)
    assert.equal(refused.body.error, 'invalid_client')
    assert.equal((await token(otherId, other)).status, 200)
    const failed = (await env.events('auth.failed')).filter((e) => e.subject === stolenId)
    assert.ok(
      failed.some((e) => e.data.reason === 'certificate_revoked'),
      JSON.stringify(failed.map((e) => e.data)),
    )
  })

  test("a tenant's own CRL applies to that tenant's agents only", async () => {
    const cert = makeLeaf(env.pki.ca, 'shared', { subject: '/CN=shared-agent/O=Acme' })
    const inStrict = await agentFor(strict, 'shared', cert)
    const elsewhere = await agentFor(tenant, 'shared', cert)
    assert.equal((await token(inStrict, cert)).status, 200)

    // Revoked in the CA's database, but only the tenant's CRL file is republished (atomically, by rename).
    revoke(env.pki.ca, cert)
    const next = `${tenantCrl}.new`
    writeFileSync(next, crlOf(env.pki.ca))
    renameSync(next, tenantCrl)
    const refused = await token(inStrict, cert)
    assert.equal(refused.status, 401)
    assert.equal(refused.body.error, 'invalid_client')
    assert.equal((await token(elsewhere, cert)).status, 200, 'the global CRL does not list it yet')
  })

  test('a CA bundle that changes on disk is reloaded', async () => {
    const fromOther = makeLeaf(env.pki.otherCa, 'partner', { subject: '/CN=partner-agent/O=Partner' })
    const id = await agentFor(bundled, 'partner', fromOther)
    assert.equal((await token(id, fromOther)).status, 401, 'the bundle trusts only the first CA')
    writeFileSync(bundle, `${env.pki.ca.certPem}\n${env.pki.otherCa.certPem}`)
    const r = await token(id, fromOther)
    assert.equal(r.status, 200, r.text)
  })

  test('a configured CRL file that cannot be read refuses (fail closed) until it can', async () => {
    const cert = makeLeaf(env.pki.ca, 'waiting', { subject: '/CN=waiting-agent/O=Acme' })
    const id = await agentFor(missing, 'waiting', cert)
    const refused = await token(id, cert)
    assert.equal(refused.status, 401)
    assert.equal(refused.body.error, 'invalid_client')
    writeFileSync(join(env.pki.ca.dir, 'not-yet.pem'), crlOf(env.pki.ca))
    assert.equal((await token(id, cert)).status, 200)
    // A broken update keeps the last good CRL instead of dropping its revocations.
    writeFileSync(join(env.pki.ca.dir, 'not-yet.pem'), '-----BEGIN X509 CRL-----\nbroken\n-----END X509 CRL-----\n')
    assert.equal((await token(id, cert)).status, 200)
  })
})
