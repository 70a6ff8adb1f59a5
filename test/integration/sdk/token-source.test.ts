/**
 * Token sources and AegisClient.fetch against the real control plane:
 * discovery, single flight, typed refusals, 429 + Retry-After, and an outage
 * longer than a refresh ridden out on the still-valid token.
 */
import { test, describe, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { decodeJwt, decodeProtectedHeader } from 'jose'
import { AegisAuthError, AegisClient, ClientCredentialsSource, type FetchLike, type RefreshInfo } from '../../../src/sdk/index.js'
import { createVerifier, nodeHttpAegis, type Verifier } from '../../../src/verify/index.js'
import { ManualClock, ManualScheduler, waitUntil } from './helpers/manual-time.js'
import { AGENT, TENANT, startAegis, type Aegis } from './helpers/roles.js'

let aegis: Aegis
before(async () => {
  aegis = await startAegis()
})
after(async () => {
  await aegis.close()
})

/** A fetch that counts token-endpoint calls (the requests still go to the real server). */
function counting(): { fetch: FetchLike; calls: () => number } {
  let n = 0
  return {
    fetch: (input, init) => {
      if (String(input).endsWith('/oauth2/token')) n++
      return fetch(input, init)
    },
    calls: () => n,
  }
}

async function issuedFor(clientId: string): Promise<number> {
  const page = await aegis.cp.deps.store.audit.query({ type: 'token.issued', tenant: TENANT, limit: 10_000 })
  return page.filter((e) => e.data.client_id === clientId).length
}

describe('ClientCredentialsSource against the control plane', () => {
  test('discovers the token endpoint and gets an RFC 9068 access token for the agent', async () => {
    const cred = await aegis.credential()
    const s = new ClientCredentialsSource({ issuer: aegis.issuer, clientId: cred.client_id, clientSecret: cred.client_secret, scope: 'crm:read' })
    try {
      const t = await s.getAccessToken()
      assert.equal(decodeProtectedHeader(t.accessToken).typ, 'at+jwt')
      const claims = decodeJwt(t.accessToken)
      assert.equal(claims.iss, aegis.issuer)
      assert.equal(claims.agent_id, AGENT)
      assert.equal(claims.scope, 'crm:read')
      assert.equal(t.scope, 'crm:read')
      assert.ok(t.refreshAt < t.expiresAt)
    } finally {
      s.close()
    }
  })

  test('client_secret_post works too', async () => {
    const cred = await aegis.credential()
    const s = new ClientCredentialsSource({
      issuer: aegis.issuer,
      clientId: cred.client_id,
      clientSecret: cred.client_secret,
      authMethod: 'client_secret_post',
    })
    try {
      assert.equal(decodeJwt(await s.getToken()).client_id, cred.client_id)
    } finally {
      s.close()
    }
  })

  test('single flight: 100 concurrent getToken calls, one token request, one issuance', async () => {
    const cred = await aegis.credential()
    const c = counting()
    const s = new ClientCredentialsSource({ issuer: aegis.issuer, clientId: cred.client_id, clientSecret: cred.client_secret, fetch: c.fetch })
    try {
      const tokens = await Promise.all(Array.from({ length: 100 }, () => s.getToken()))
      assert.equal(new Set(tokens).size, 1)
      assert.equal(c.calls(), 1)
      assert.equal(await issuedFor(cred.client_id), 1)
    } finally {
      s.close()
    }
  })

  test('a wrong secret fails at once with AegisAuthError invalid_client, no retry, no secret in the error', async () => {
    const cred = await aegis.credential()
    const c = counting()
    const s = new ClientCredentialsSource({ issuer: aegis.issuer, clientId: cred.client_id, clientSecret: `${cred.client_secret}x`, fetch: c.fetch })
    try {
      await assert.rejects(s.getToken(), (err: unknown) => {
        assert.ok(err instanceof AegisAuthError)
        assert.equal(err.code, 'invalid_client')
        assert.equal(err.status, 401)
        assert.ok(!`${err.message} ${err.description} ${JSON.stringify(err)}`.includes(cred.client_secret))
        return true
      })
      assert.equal(c.calls(), 1)
    } finally {
      s.close()
    }
  })

  test('a scope the agent does not hold fails with invalid_scope', async () => {
    const cred = await aegis.credential()
    const s = new ClientCredentialsSource({ issuer: aegis.issuer, clientId: cred.client_id, clientSecret: cred.client_secret, scope: 'admin:everything' })
    try {
      await assert.rejects(s.getToken(), (err: unknown) => err instanceof AegisAuthError && err.code === 'invalid_scope' && err.status === 400)
    } finally {
      s.close()
    }
  })
})

test('429 from the control plane: the source waits at least Retry-After, then gets its token', async () => {
  const limited = await startAegis({ overrides: { rateLimit: { perClient: 1, perIp: 1_000_000, windowSeconds: 2 } } })
  const clock = new ManualClock()
  const scheduler = new ManualScheduler(clock)
  const events: RefreshInfo[] = []
  const cred = await limited.credential()
  const s = new ClientCredentialsSource({
    issuer: limited.issuer,
    tokenEndpoint: `${limited.issuer}/oauth2/token`,
    clientId: cred.client_id,
    clientSecret: cred.client_secret,
    clock,
    scheduler,
    onRefresh: (i) => events.push(i),
  })
  try {
    const first = await s.getToken()
    s.invalidate(first)
    const pending = s.getToken()
    await waitUntil(() => events.length === 2, 'the rate-limited attempt')
    assert.equal(events[1]!.outcome, 'retry')
    assert.equal(events[1]!.status, 429)
    assert.equal(events[1]!.code, 'rate_limited')
    const delay = events[1]!.delayMs!
    assert.ok(delay >= 1000, `waits ${delay} ms`)
    scheduler.fireUntil(clock.now() + delay - 1)
    assert.equal(events.length, 2, 'no attempt before Retry-After')
    // The server's window is real time: let it roll over, then release the retry.
    await new Promise((r) => setTimeout(r, delay + 50))
    scheduler.fireUntil(clock.now() + 1)
    const second = await pending
    assert.notEqual(second, first)
    assert.equal(events.at(-1)!.outcome, 'success')
  } finally {
    s.close()
    await limited.close()
  }
})

test('control plane down longer than a refresh: calls keep working on the valid token and recover after it returns', async () => {
  const cred = await aegis.credential()
  const clock = new ManualClock()
  const scheduler = new ManualScheduler(clock)
  const events: RefreshInfo[] = []
  const client = new AegisClient({
    issuer: aegis.issuer,
    clientId: cred.client_id,
    clientSecret: cred.client_secret,
    clock,
    scheduler,
    onRefresh: (i) => events.push(i),
  })
  // A tool server verifying tokens locally: it needs the control plane only for the JWKS, fetched once.
  const verifier: Verifier = createVerifier({ issuer: aegis.issuer, audience: 'aegis-gateway' })
  const guard = nodeHttpAegis(verifier)
  const tool: Server = createServer((req, res) => {
    guard(req, res).then(
      (claims) => {
        if (!claims) return
        res.writeHead(200, { 'content-type': 'application/json' })
        res.end(JSON.stringify({ jti: claims.jti }))
      },
      () => {
        res.writeHead(500)
        res.end()
      },
    )
  })
  await new Promise<void>((r) => tool.listen(0, '127.0.0.1', r))
  const toolUrl = `http://127.0.0.1:${(tool.address() as AddressInfo).port}/tool`
  const call = async (): Promise<{ status: number; jti: string | undefined }> => {
    const res = await client.fetch(toolUrl)
    const body = (await res.json()) as { jti?: string }
    return { status: res.status, jti: body.jti }
  }
  try {
    const first = await client.tokenSource.getAccessToken()
    assert.equal((await call()).status, 200)

    await aegis.stopControlPlane()
    let restarted = false
    try {
      // Through the whole refresh window and most of the remaining lifetime.
      const until = first.expiresAt - 10_000
      while (clock.now() < until) {
        const before = events.length
        const due = scheduler.nextDue()
        scheduler.fireUntil(Math.min(due ?? until, until))
        if (due !== undefined && due <= until) await waitUntil(() => events.length > before, 'a refresh attempt')
        const r = await call()
        assert.equal(r.status, 200, 'the tool still accepts the valid token')
        assert.equal(r.jti, decodeJwt(first.accessToken).jti)
      }
      const failed = events.filter((e) => e.outcome !== 'success')
      assert.ok(failed.length >= 3, `${failed.length} failed attempts`)
      assert.ok(failed.every((e) => e.code === 'network_error'))
      assert.ok(failed[0]!.startedAt >= first.refreshAt)

      await aegis.restartControlPlane()
      restarted = true
    } finally {
      if (!restarted) await aegis.restartControlPlane()
    }
    const due = scheduler.nextDue()
    assert.ok(due !== undefined && due < first.expiresAt, 'another attempt is scheduled before expiry')
    const before = events.length
    scheduler.fireUntil(due)
    await waitUntil(() => events.length > before && events.at(-1)!.outcome === 'success', 'recovery')
    const fresh = await client.getToken()
    assert.notEqual(fresh, first.accessToken)
    const r = await call()
    assert.equal(r.status, 200)
    assert.equal(r.jti, decodeJwt(fresh).jti)
  } finally {
    client.close()
    verifier.close()
    await new Promise<void>((r) => {
      tool.close(() => r())
      tool.closeAllConnections()
    })
  }
})
