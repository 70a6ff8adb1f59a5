import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import Fastify from 'fastify'
import { ManualClock } from '../../../src/lib/clock.js'
import {
  bearerToken,
  createVerifier,
  expressAegis,
  fastifyAegis,
  nodeHttpAegis,
  type ExpressLikeRequest,
  type Verifier,
  type VerifyRequestOptions,
} from '../../../src/verify/index.js'
import { AUDIENCE, claimsAt, ed25519Key, rawSign, signToken, startJwksServer, type JwksServer, type TestKey } from '../../unit/verify/fixtures.js'

const ISSUER = 'https://aegis.test'
const REVOKED_JTI = 'jti_revoked'
const PRESENTED_THUMBPRINT = 'presented-cert-thumbprint'

/** One options set per path, the same for every adapter. */
const ROUTES: Record<string, VerifyRequestOptions> = {
  '/tool': {},
  '/read': { requiredScopes: ['crm:read'] },
  '/admin': { requiredScopes: ['admin:write', 'crm:read'] },
  '/denylist': { isDenied: (claims) => claims.jti === REVOKED_JTI },
  // A tool server behind mTLS would compare cnf['x5t#S256'] with its client certificate's thumbprint.
  '/bound': { checkSenderConstraint: (cnf) => cnf['x5t#S256'] === PRESENTED_THUMBPRINT },
  '/broken': {
    isDenied: () => {
      throw new Error('feed down')
    },
  },
}

interface Mounted {
  url: string
  close(): Promise<void>
}

async function listen(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<Mounted> {
  const server = createServer(handler)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}

const ADAPTERS: Record<string, (verifier: Verifier) => Promise<Mounted>> = {
  async fastify(verifier) {
    const app = Fastify()
    for (const [path, options] of Object.entries(ROUTES)) {
      app.register(async (scope) => {
        scope.addHook('onRequest', fastifyAegis(verifier, options))
        scope.get(path, async (request) => ({ sub: request.aegis?.sub, tenant: request.aegis?.tenant }))
      })
    }
    await app.listen({ port: 0, host: '127.0.0.1' })
    const { port } = app.server.address() as AddressInfo
    return { url: `http://127.0.0.1:${port}`, close: () => app.close() }
  },
  async express(verifier) {
    // The way express runs a middleware: (req, res, next), then the route handler.
    const middlewares = Object.fromEntries(Object.entries(ROUTES).map(([p, o]) => [p, expressAegis(verifier, o)]))
    return listen((req, res) => {
      const mw = middlewares[req.url ?? '']
      if (!mw) {
        res.statusCode = 404
        res.end()
        return
      }
      const r = req as IncomingMessage & ExpressLikeRequest
      mw(r, res, (err?: unknown) => {
        if (err) {
          res.statusCode = 500
          res.end()
          return
        }
        res.setHeader('content-type', 'application/json')
        res.end(JSON.stringify({ sub: r.aegis?.sub, tenant: r.aegis?.tenant }))
      })
    })
  },
  async 'node:http'(verifier) {
    const guards = Object.fromEntries(Object.entries(ROUTES).map(([p, o]) => [p, nodeHttpAegis(verifier, o)]))
    return listen(async (req, res) => {
      const guard = guards[req.url ?? '']
      if (!guard) {
        res.statusCode = 404
        res.end()
        return
      }
      const claims = await guard(req, res)
      if (!claims) return
      res.setHeader('content-type', 'application/json')
      res.end(JSON.stringify({ sub: claims.sub, tenant: claims.tenant }))
    })
  },
}

async function call(url: string, token?: string, scheme = 'Bearer'): Promise<{ status: number; www: string | null; body: Record<string, unknown> }> {
  // A request left unanswered fails here, naming its call, instead of running out the file's two-minute timeout with no output (seen once in CI).
  const res = await fetch(url, { headers: token === undefined ? {} : { authorization: `${scheme} ${token}` }, signal: AbortSignal.timeout(20_000) })
  const text = await res.text()
  return { status: res.status, www: res.headers.get('www-authenticate'), body: text ? (JSON.parse(text) as Record<string, unknown>) : {} }
}

function assertInvalidToken(r: Awaited<ReturnType<typeof call>>, description?: string): void {
  assert.equal(r.status, 401)
  assert.match(r.www ?? '', /^Bearer error="invalid_token", error_description="[^"]+"$/)
  assert.equal(r.body.error, 'invalid_token')
  assert.equal(typeof r.body.error_description, 'string')
  if (description !== undefined) assert.equal(r.body.error_description, description)
}

describe('tool-server middleware', () => {
  let jwks: JwksServer
  let k1: TestKey
  const clock = new ManualClock()
  const nowSec = () => Math.floor(clock.now() / 1000)
  let verifier: Verifier

  before(async () => {
    k1 = ed25519Key('k1')
    jwks = await startJwksServer([k1])
    verifier = createVerifier({ issuer: ISSUER, audience: AUDIENCE, jwksUrl: jwks.jwksUrl, clock })
    await verifier.jwks.ready
  })
  after(async () => {
    verifier.close()
    await jwks.close()
  })

  for (const [name, mount] of Object.entries(ADAPTERS)) {
    test(`${name}: verified claims reach the handler; bad, missing, revoked and under-scoped tokens are answered 401/403/503`, async () => {
      const server = await mount(verifier)
      try {
        const good = await signToken(k1, claimsAt(ISSUER, nowSec()))
        const ok = await call(`${server.url}/tool`, good)
        assert.equal(ok.status, 200)
        assert.deepEqual(ok.body, { sub: 'billing-bot', tenant: 'acme' })
        assert.equal((await call(`${server.url}/read`, good)).status, 200)
        assert.equal((await call(`${server.url}/tool`, good, 'bearer')).status, 200)

        assertInvalidToken(await call(`${server.url}/tool`), 'missing bearer token')
        assertInvalidToken(await call(`${server.url}/tool`, good, 'Basic'), 'missing bearer token')
        assertInvalidToken(await call(`${server.url}/tool`, rawSign({ alg: 'none', typ: 'at+jwt', kid: 'k1' }, claimsAt(ISSUER, nowSec()), null)))
        assertInvalidToken(await call(`${server.url}/tool`, await signToken(k1, claimsAt(ISSUER, nowSec() - 3600))), 'token expired')
        assertInvalidToken(
          await call(`${server.url}/tool`, await signToken(k1, claimsAt(ISSUER, nowSec(), { aud: 'elsewhere' }))),
          'token audience not accepted',
        )

        const revoked = await signToken(k1, claimsAt(ISSUER, nowSec(), { jti: REVOKED_JTI }))
        assertInvalidToken(await call(`${server.url}/denylist`, revoked), 'token revoked')
        assert.equal((await call(`${server.url}/denylist`, good)).status, 200)

        const broken = await call(`${server.url}/broken`, good)
        assert.equal(broken.status, 503)
        assert.equal(broken.body.error, 'temporarily_unavailable')

        const scoped = await call(`${server.url}/admin`, good)
        assert.equal(scoped.status, 403)
        assert.equal(scoped.body.error, 'insufficient_scope')
        assert.match(scoped.www ?? '', /^Bearer error="insufficient_scope", error_description="[^"]+", scope="admin:write crm:read"$/)

        // Sender-constrained tokens: refused as plain bearer tokens, accepted only where the binding is proven.
        const bound = await signToken(k1, claimsAt(ISSUER, nowSec(), { cnf: { 'x5t#S256': PRESENTED_THUMBPRINT } }))
        assertInvalidToken(await call(`${server.url}/tool`, bound), 'sender-constrained token presented without proof of possession')
        assert.equal((await call(`${server.url}/bound`, bound)).status, 200)
        const otherKey = await signToken(k1, claimsAt(ISSUER, nowSec(), { cnf: { 'x5t#S256': 'another-certificate' } }))
        assertInvalidToken(await call(`${server.url}/bound`, otherKey), 'sender-constrained token presented without proof of possession')
        const dpopBound = await signToken(k1, claimsAt(ISSUER, nowSec(), { cnf: { jkt: 'thumbprint-of-a-dpop-key' } }))
        assertInvalidToken(await call(`${server.url}/tool`, dpopBound), 'sender-constrained token presented without proof of possession')

        // The verifier still serves valid tokens afterwards.
        assert.equal((await call(`${server.url}/tool`, good)).status, 200)
      } finally {
        await server.close()
      }
    })
  }

  test('a token signed by a newly published key is verified after one JWKS refetch (verifyAsync path)', async () => {
    const server = await ADAPTERS['node:http']!(verifier)
    try {
      const k2 = ed25519Key('k2')
      jwks.keys = [k1.jwk, k2.jwk]
      clock.advance(10_000)
      const before = jwks.jwksRequests()
      const r = await call(`${server.url}/tool`, await signToken(k2, claimsAt(ISSUER, nowSec())))
      assert.equal(r.status, 200)
      assert.equal(jwks.jwksRequests(), before + 1)
    } finally {
      await server.close()
    }
  })

  test('bearerToken reads only a well-formed single Bearer credential', () => {
    assert.equal(bearerToken({ authorization: 'Bearer abc.def.ghi' }), 'abc.def.ghi')
    assert.equal(bearerToken({ authorization: 'bearer   abc' }), 'abc')
    assert.equal(bearerToken({ authorization: 'Bearer' }), undefined)
    assert.equal(bearerToken({ authorization: 'Bearer a b' }), undefined)
    assert.equal(bearerToken({ authorization: 'Bearer a,b' }), undefined)
    assert.equal(bearerToken({ authorization: 'Basic abc' }), undefined)
    assert.equal(bearerToken({ authorization: ['Bearer a', 'Bearer b'] }), undefined)
    assert.equal(bearerToken({}), undefined)
  })
})
