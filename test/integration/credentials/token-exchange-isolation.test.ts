/**
 * Token exchange is tenant-isolated and cannot be aimed at internal
 * addresses: another tenant's entries for the same issuer (unreachable keys,
 * a pile of entries, a rule of its own) never change what a tenant's
 * exchanges get; the tenant's own unreachable keys answer one 503 whatever
 * the failure; a jwks_uri on loopback or private addresses is refused unless
 * the operator allows the range, and never fetched. Real HTTP servers on
 * loopback play the issuers.
 */
import { describe, test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createServer, type Server, type ServerResponse } from 'node:http'
import { randomBytes, randomUUID } from 'node:crypto'
import { SignJWT, decodeJwt, exportJWK, generateKeyPair, type CryptoKey, type JWK } from 'jose'
import { startCredentialEnv, tenantId, type CredentialEnv } from './harness.js'
import { freePort } from '../../helpers/ports.js'

const GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange'
const JWT_TYPE = 'urn:ietf:params:oauth:token-type:jwt'
const SUB = 'system:serviceaccount:payments:billing-agent'

/** A tiny HTTP server answering every request with `handle`, counting hits. */
class Peer {
  server: Server
  url = ''
  hits = 0
  constructor(handle: (res: ServerResponse, peer: Peer) => void) {
    this.server = createServer((_req, res) => {
      this.hits++
      handle(res, this)
    })
  }
  async start(): Promise<this> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r))
    this.url = `http://127.0.0.1:${(this.server.address() as { port: number }).port}`
    return this
  }
  close(): Promise<void> {
    return new Promise((r) => {
      this.server.closeAllConnections()
      this.server.close(() => r())
    })
  }
}

/** A workload-identity issuer: its JWKS at /keys, RS256 tokens. */
class Issuer extends Peer {
  key!: CryptoKey
  jwk!: JWK
  constructor() {
    super((res, self) => {
      res.setHeader('content-type', 'application/json')
      res.end(JSON.stringify({ keys: [(self as Issuer).jwk] }))
    })
  }
  override async start(): Promise<this> {
    const kp = await generateKeyPair('RS256')
    this.key = kp.privateKey
    this.jwk = { ...(await exportJWK(kp.publicKey)), kid: 'wi-1', alg: 'RS256', use: 'sig' }
    return super.start()
  }
  sign(claims: Record<string, unknown>, aud = 'aegis'): Promise<string> {
    const now = Math.floor(Date.now() / 1000)
    return new SignJWT({ ...claims, jti: randomUUID() })
      .setProtectedHeader({ alg: 'RS256', kid: 'wi-1', typ: 'JWT' })
      .setIssuer(this.url)
      .setAudience(aud)
      .setIssuedAt(now)
      .setExpirationTime(now + 300)
      .sign(this.key)
  }
}

async function otherJwks(): Promise<{ keys: JWK[] }> {
  const kp = await generateKeyPair('RS256')
  return { keys: [{ ...(await exportJWK(kp.publicKey)), kid: 'other', alg: 'RS256', use: 'sig' }] }
}

describe('token exchange across tenants', () => {
  let env: CredentialEnv
  const issuer = new Issuer()
  // Tenant ids chosen so the intruding tenant sorts first, as it would when it tries to be looked at first.
  const victim = `z-${tenantId()}`
  const intruder = `a-${tenantId()}`
  const peers: Peer[] = []

  before(async () => {
    env = await startCredentialEnv({ overrides: { tokenExchange: { jwksAllowedNetworks: ['127.0.0.0/8'], jwksTimeoutMs: 500 } } })
    await issuer.start()
    for (const t of [victim, intruder]) {
      await env.admin('POST', '/tenants', { id: t, name: t })
      await env.admin('POST', `/tenants/${t}/agents`, { agent_id: 'billing', scopes: ['crm:read'], capabilities: ['crm.read'] })
    }
    await env.admin('POST', `/tenants/${intruder}/agents`, { agent_id: 'thief', scopes: ['crm:read'], capabilities: ['crm.read'] })
    await env.admin('POST', `/tenants/${victim}/trusted-issuers`, {
      issuer: issuer.url,
      jwks_uri: `${issuer.url}/keys`,
      audience: 'aegis',
      rules: [{ claims: { sub: SUB }, agent_id: 'billing' }],
    })
  })
  after(async () => {
    await env.close()
    await issuer.close()
    for (const p of peers) await p.close()
  })

  const exchange = async (extra: Record<string, string> = {}, subject?: string) =>
    env.form(`${env.url}/oauth2/token`, {
      grant_type: GRANT,
      subject_token: subject ?? (await issuer.sign({ sub: SUB })),
      subject_token_type: JWT_TYPE,
      ...extra,
    })

  test("another tenant's entry for the same issuer whose keys are unreachable is no match, not an outage", async () => {
    const closed = await freePort()
    await env.admin('POST', `/tenants/${intruder}/trusted-issuers`, {
      issuer: issuer.url,
      jwks_uri: `http://127.0.0.1:${closed}/keys`,
      audience: 'aegis',
      rules: [{ claims: { sub: 'nobody' }, agent_id: 'thief' }],
    })
    const r = await exchange()
    assert.equal(r.status, 200, r.text)
    assert.equal(decodeJwt(r.body.access_token).tenant, victim)
  })

  test("entries another tenant piles up for the issuer never push the tenant's own out", async () => {
    const jwks = await otherJwks()
    for (let i = 0; i < 25; i++) {
      await env.admin('POST', `/tenants/${intruder}/trusted-issuers`, {
        issuer: issuer.url,
        jwks,
        audience: 'aegis',
        rules: [{ claims: { sub: `other-${i}` }, agent_id: 'thief' }],
      })
    }
    const r = await exchange()
    assert.equal(r.status, 200, r.text)
    assert.equal(decodeJwt(r.body.access_token).tenant, victim)
    assert.equal(decodeJwt(r.body.access_token).agent_id, 'billing')
  })

  test('a token two tenants map to agents is refused unless the tenant is named; a named tenant gets only its own agent', async () => {
    // A rival tenant trusts the same issuer (its public keys inline) and maps the same workload to its own agent.
    const rival = `b-${tenantId()}`
    await env.admin('POST', '/tenants', { id: rival, name: rival })
    await env.admin('POST', `/tenants/${rival}/agents`, { agent_id: 'thief', scopes: ['crm:read'], capabilities: ['crm.read'] })
    await env.admin('POST', `/tenants/${rival}/trusted-issuers`, {
      issuer: issuer.url,
      jwks: { keys: [issuer.jwk] },
      audience: 'aegis',
      rules: [{ claims: { sub: SUB }, agent_id: 'thief' }],
    })
    const ambiguous = await exchange()
    assert.equal(ambiguous.status, 400)
    assert.equal(ambiguous.body.error, 'invalid_grant')
    assert.match(ambiguous.body.error_description, /more than one tenant; name the tenant/)

    const mine = await exchange({ tenant: victim })
    assert.equal(mine.status, 200, mine.text)
    assert.equal(decodeJwt(mine.body.access_token).tenant, victim)
    assert.equal(decodeJwt(mine.body.access_token).agent_id, 'billing')
    const theirs = await exchange({ tenant: rival })
    assert.equal(theirs.status, 200, theirs.text)
    assert.equal(decodeJwt(theirs.body.access_token).tenant, rival)
    assert.equal(decodeJwt(theirs.body.access_token).agent_id, 'thief')

    // A tenant that does not exist and one that does not trust the issuer get the same answer.
    const nowhere = await exchange({ tenant: 'no-such-tenant' })
    const stranger = tenantId()
    await env.admin('POST', '/tenants', { id: stranger, name: stranger })
    const untrusting = await exchange({ tenant: stranger })
    assert.equal(nowhere.status, 400)
    assert.deepEqual(nowhere.body, untrusting.body)
  })

  test("the tenant's own unreachable keys answer one 503, whatever the failure; a redirect is not followed", async () => {
    const redirectTarget = new Issuer()
    peers.push(redirectTarget)
    await redirectTarget.start()
    const kinds: Record<string, (res: ServerResponse) => void> = {
      'not found': (res) => {
        res.statusCode = 404
        res.end('no')
      },
      'not JSON': (res) => {
        res.setHeader('content-type', 'text/html')
        res.end('<html>admin console</html>')
      },
      'JSON but no key set': (res) => {
        res.setHeader('content-type', 'application/json')
        res.end('{"status":"ok"}')
      },
      'too large': (res) => {
        res.setHeader('content-type', 'application/json')
        res.end(JSON.stringify({ keys: [], pad: 'x'.repeat(200_000) }))
      },
      'never answers': () => {},
      'a redirect': (res) => {
        res.statusCode = 302
        res.setHeader('location', `${redirectTarget.url}/keys`)
        res.end()
      },
    }
    const answers: Array<{ kind: string; status: number; body: unknown }> = []
    const tryIt = async (kind: string, jwksUri: string): Promise<void> => {
      const t = tenantId()
      await env.admin('POST', '/tenants', { id: t, name: t })
      await env.admin('POST', `/tenants/${t}/agents`, { agent_id: 'billing', scopes: ['crm:read'], capabilities: ['crm.read'] })
      await env.admin('POST', `/tenants/${t}/trusted-issuers`, {
        issuer: issuer.url,
        jwks_uri: jwksUri,
        audience: 'aegis',
        rules: [{ claims: { sub: SUB }, agent_id: 'billing' }],
      })
      const r = await exchange({ tenant: t })
      answers.push({ kind, status: r.status, body: r.body })
    }
    await tryIt('closed port', `http://127.0.0.1:${await freePort()}/keys`)
    for (const [kind, handle] of Object.entries(kinds)) {
      const p = new Peer(handle)
      peers.push(p)
      await p.start()
      await tryIt(kind, `${p.url}/keys`)
    }
    for (const a of answers) {
      assert.equal(a.status, 503, `${a.kind}: ${JSON.stringify(a.body)}`)
      assert.deepEqual(a.body, answers[0]!.body, `${a.kind} answers like a closed port`)
    }
    assert.equal((answers[0]!.body as { error: string }).error, 'temporarily_unavailable')
    assert.equal(redirectTarget.hits, 0, 'the redirect was not followed')
  })
})

describe('jwks_uri without the operator allowing internal networks', () => {
  let env: CredentialEnv
  const tenant = tenantId()

  before(async () => {
    env = await startCredentialEnv({ overrides: { tokenExchange: { jwksAllowedNetworks: [] } } })
    await env.admin('POST', '/tenants', { id: tenant, name: tenant })
    await env.admin('POST', `/tenants/${tenant}/agents`, { agent_id: 'billing', scopes: ['crm:read'], capabilities: ['crm.read'] })
  })
  after(async () => {
    await env.close()
  })

  test('loopback, private, link-local and plain-http jwks_uri are refused with invalid_request and nothing is stored', async () => {
    const port = await freePort()
    const refused = [
      `http://127.0.0.1:${port}/keys`,
      'https://127.0.0.1/keys',
      'https://127.1.2.3:8443/keys',
      'https://10.1.2.3/keys',
      'https://192.168.0.10/keys',
      'https://172.16.5.4/keys',
      'https://100.64.0.1/keys',
      'https://169.254.169.254/latest/meta-data',
      'https://[::1]/keys',
      'https://[fd00::1]/keys',
      'https://[fe80::1]/keys',
      'https://[::ffff:127.0.0.1]/keys',
      'https://0.0.0.0/keys',
      'https://localhost/keys',
      'http://93.184.215.14/keys',
      'https://user:secret@93.184.215.14/keys',
      'ftp://93.184.215.14/keys',
      'http://jwks.invalid/keys',
    ]
    for (const jwksUri of refused) {
      const r = await env.call(`${env.url}/admin/v1/tenants/${tenant}/trusted-issuers`, {
        method: 'POST',
        headers: { authorization: `Bearer ${env.adminToken}`, 'content-type': 'application/json' },
        body: JSON.stringify({
          issuer: 'https://issuer.example',
          jwks_uri: jwksUri,
          audience: 'aegis',
          rules: [{ claims: { sub: SUB }, agent_id: 'billing' }],
        }),
      })
      assert.equal(r.status, 400, `${jwksUri}: ${r.text}`)
      assert.equal(r.body.error, 'invalid_request')
      assert.match(r.body.error_description, /jwks_uri/)
    }
    assert.deepEqual((await env.admin('GET', `/tenants/${tenant}/trusted-issuers`)).trusted_issuers, [])
    // An https name that does not resolve from here now is accepted: every fetch checks its addresses again.
    const later = await env.admin('POST', `/tenants/${tenant}/trusted-issuers`, {
      issuer: 'https://issuer.example',
      jwks_uri: 'https://jwks.invalid/keys',
      audience: 'aegis',
      rules: [{ claims: { sub: SUB }, agent_id: 'billing' }],
    })
    await env.admin('DELETE', `/tenants/${tenant}/trusted-issuers/${later.id}`)
  })

  test('an entry stored before the rule, pointing at loopback, is never fetched: the exchange answers 503', async () => {
    const internal = new Issuer()
    await internal.start()
    try {
      await env.cp.deps.store.trustedIssuers.create({
        id: `ti_${randomBytes(6).toString('hex')}`,
        tenant,
        issuer: internal.url,
        jwksUri: `${internal.url}/keys`,
        jwks: null,
        audience: 'aegis',
        rules: [{ claims: { sub: SUB }, agentId: 'billing' }],
        createdAt: Date.now(),
      })
      const r = await env.form(`${env.url}/oauth2/token`, {
        grant_type: GRANT,
        subject_token: await internal.sign({ sub: SUB }),
        subject_token_type: JWT_TYPE,
        tenant,
      })
      assert.equal(r.status, 503, r.text)
      assert.equal(r.body.error, 'temporarily_unavailable')
      assert.equal(internal.hits, 0, 'no request reached the loopback server')
    } finally {
      await internal.close()
    }
  })
})
