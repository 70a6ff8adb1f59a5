import { test, describe, before, after, beforeEach } from 'node:test'
import assert from 'node:assert/strict'
import { decodeJwt } from 'jose'
import { AegisAuthError, AegisSdkError, AegisUnavailableError, ClientCredentialsSource, TokenExchangeSource, type RefreshInfo } from '../../../src/sdk/index.js'
import { ManualClock, ManualScheduler, waitUntil, seededRandom } from '../../integration/sdk/helpers/manual-time.js'
import { startPeerTokenServer, type PeerTokenServer } from '../../integration/sdk/helpers/peer-token-server.js'

const SECRET = 's3cr:et+with/odd=chars%'
let clock: ManualClock
let scheduler: ManualScheduler
let server: PeerTokenServer
const open: Array<{ close(): void }> = []

before(async () => {
  clock = new ManualClock(1_800_000_000_000)
  server = await startPeerTokenServer({ now: () => clock.now() })
})
after(async () => {
  await server.stop()
})
beforeEach(() => {
  for (const s of open.splice(0)) s.close()
  clock.set(1_800_000_000_000)
  scheduler = new ManualScheduler(clock)
  server.requests.length = 0
  server.script.length = 0
  server.expiresIn = 600
  server.metadataIssuer = undefined
  server.clients.clear()
  server.clients.set('agent-1', SECRET)
})

function source(extra: Partial<ConstructorParameters<typeof ClientCredentialsSource>[0]> = {}): ClientCredentialsSource & { events: RefreshInfo[] } {
  const events: RefreshInfo[] = []
  const s = new ClientCredentialsSource({
    issuer: server.issuer,
    tokenEndpoint: server.tokenEndpoint,
    clientId: 'agent-1',
    clientSecret: SECRET,
    clock,
    scheduler,
    random: seededRandom(7),
    onRefresh: (i) => events.push(i),
    ...extra,
  })
  open.push(s)
  return Object.assign(s, { events })
}

describe('ClientCredentialsSource', () => {
  test('caches the token: a second getToken sends no request', async () => {
    const s = source()
    const a = await s.getToken()
    const b = await s.getToken()
    assert.equal(a, b)
    assert.equal(server.requests.length, 1)
    assert.equal(server.requests[0]!.params.grant_type, 'client_credentials')
    assert.equal(decodeJwt(a).sub, 'agent-1')
  })

  test('client_secret_basic form-encodes the credentials (RFC 6749 §2.3.1); client_secret_post sends them in the body', async () => {
    await source().getToken()
    await source({ authMethod: 'client_secret_post' }).getToken()
    assert.deepEqual(
      server.requests.map((r) => r.auth),
      ['basic', 'post'],
    )
    assert.equal(server.requests[1]!.params.client_secret, SECRET)
  })

  test('scope and audience are sent', async () => {
    await source({ scope: ['crm:read', 'payments:write'], audience: 'tools' }).getToken()
    assert.equal(server.requests[0]!.params.scope, 'crm:read payments:write')
    assert.equal(server.requests[0]!.params.audience, 'tools')
  })

  test('single flight: 100 concurrent getToken calls make one request', async () => {
    const s = source()
    const tokens = await Promise.all(Array.from({ length: 100 }, () => s.getToken()))
    assert.equal(server.requests.length, 1)
    assert.equal(new Set(tokens).size, 1)
  })

  test('the refresh is scheduled at a point inside [60 %, 85 %] of the lifetime and happens there', async () => {
    const s = source()
    const first = await s.getAccessToken()
    const lifetime = first.expiresAt - clock.now()
    assert.equal(lifetime, 600_000)
    const offset = first.refreshAt - clock.now()
    assert.ok(offset >= 0.6 * lifetime && offset <= 0.85 * lifetime, `refresh at ${offset / lifetime}`)
    scheduler.fireUntil(first.refreshAt - 1)
    assert.equal(server.requests.length, 1, 'nothing before the refresh point')
    const t0 = first.refreshAt
    scheduler.fireUntil(t0)
    await waitUntil(() => s.events.length === 2, 'background refresh')
    assert.equal(server.requests.length, 2)
    assert.equal(server.requests[1]!.at, t0)
    const second = await s.getAccessToken()
    assert.notEqual(second.accessToken, first.accessToken)
    assert.equal(s.events[1]!.background, true)
  })

  test('without background refresh, a getToken inside the window returns the current token and refreshes behind it', async () => {
    const s = source({ backgroundRefresh: false })
    const first = await s.getAccessToken()
    assert.equal(scheduler.size, 0)
    clock.set(first.refreshAt)
    assert.equal(await s.getToken(), first.accessToken)
    await waitUntil(() => s.events.length === 2, 'refresh behind the call')
    assert.notEqual(await s.getToken(), first.accessToken)
    assert.equal(server.requests.length, 2)
  })

  test('429 with Retry-After: waits at least that long before retrying', async () => {
    server.script.push({ status: 429, body: { error: 'rate_limited' }, headers: { 'retry-after': '7' } })
    const s = source()
    const pending = s.getToken()
    await waitUntil(() => s.events.length === 1, 'first attempt')
    assert.equal(s.events[0]!.outcome, 'retry')
    assert.equal(s.events[0]!.status, 429)
    assert.ok(s.events[0]!.delayMs! >= 7000, `delay ${s.events[0]!.delayMs}`)
    scheduler.fireUntil(clock.now() + 6999)
    assert.equal(server.requests.length, 1, 'no retry before Retry-After')
    scheduler.fireUntil(clock.now() + s.events[0]!.delayMs!)
    const token = await pending
    assert.ok(token.length > 0)
    assert.equal(server.requests.length, 2)
    assert.ok(server.requests[1]!.at - server.requests[0]!.at >= 7000)
  })

  test('a Retry-After beyond the largest backoff fails at once instead of hanging the caller', async () => {
    server.script.push({ status: 503, headers: { 'retry-after': '120' } })
    const s = source({ retry: { maxDelayMs: 30_000 } })
    await assert.rejects(s.getToken(), (err: unknown) => err instanceof AegisUnavailableError && err.retryAfterMs === 120_000)
    assert.equal(server.requests.length, 1)
  })

  test('5xx and dropped connections are retried with backoff', async () => {
    server.script.push({ status: 503 }, { drop: true }, { status: 500 })
    const s = source()
    const pending = s.getToken()
    for (let i = 1; i <= 3; i++) {
      await waitUntil(() => s.events.length === i, `attempt ${i}`)
      assert.equal(s.events[i - 1]!.outcome, 'retry')
      scheduler.fireUntil(clock.now() + s.events[i - 1]!.delayMs!)
    }
    await pending
    assert.deepEqual(
      s.events.map((e) => e.code ?? e.outcome),
      ['temporarily_unavailable', 'network_error', 'server_error', 'success'],
    )
    assert.equal(server.requests.length, 4)
  })

  test('gives up after maxAttempts with AegisUnavailableError', async () => {
    server.script.push({ status: 503 }, { status: 503 })
    const s = source({ retry: { maxAttempts: 2 } })
    const pending = s.getToken()
    await waitUntil(() => s.events.length === 1, 'first attempt')
    scheduler.fireUntil(clock.now() + s.events[0]!.delayMs!)
    await assert.rejects(pending, (err: unknown) => err instanceof AegisUnavailableError && err.code === 'temporarily_unavailable' && err.status === 503)
    assert.equal(server.requests.length, 2)
  })

  test('401 invalid_client fails at once with AegisAuthError, no retry, and never shows the secret', async () => {
    const s = source({ clientSecret: 'wrong-secret-value' })
    await assert.rejects(s.getToken(), (err: unknown) => {
      assert.ok(err instanceof AegisAuthError)
      assert.equal(err.code, 'invalid_client')
      assert.equal(err.status, 401)
      assert.ok(!String(err.message).includes('wrong-secret-value'))
      assert.ok(!JSON.stringify(err).includes('wrong-secret-value'))
      return true
    })
    assert.equal(server.requests.length, 1)
  })

  test('400 invalid_scope fails at once with the OAuth error code', async () => {
    server.script.push({ status: 400, body: { error: 'invalid_scope', error_description: 'scope not granted' } })
    await assert.rejects(
      source().getToken(),
      (err: unknown) => err instanceof AegisAuthError && err.code === 'invalid_scope' && err.description === 'scope not granted',
    )
    assert.equal(server.requests.length, 1)
  })

  test('a malformed token response is refused', async () => {
    server.script.push({ status: 200, body: { access_token: 'x', token_type: 'DPoP', expires_in: 60 } })
    await assert.rejects(source().getToken(), (err: unknown) => err instanceof AegisSdkError && err.code === 'invalid_response')
  })

  test('control plane down across the refresh window: the valid token keeps being served, then a fresh one after it returns', async () => {
    const s = source()
    const first = await s.getAccessToken()
    await server.stop()
    try {
      scheduler.fireUntil(first.refreshAt)
      await waitUntil(() => s.events.some((e) => e.outcome !== 'success' && e.startedAt >= first.refreshAt), 'a failed refresh')
      // Keep advancing through retries and later attempts until close to expiry.
      const until = first.expiresAt - 10_000
      while (clock.now() < until) {
        const due = scheduler.nextDue()
        const step = due === undefined ? until : Math.min(due, until)
        const before = s.events.length
        scheduler.fireUntil(step)
        if (due !== undefined && due <= until) await waitUntil(() => s.events.length > before || scheduler.size > 0, 'an attempt')
        assert.equal(await s.getToken(), first.accessToken, 'still the valid token')
      }
      assert.ok(s.events.filter((e) => e.code === 'network_error').length >= 2)
    } finally {
      await server.restart()
    }
    const before = server.requests.length
    const due = scheduler.nextDue()
    assert.ok(due !== undefined, 'a retry is scheduled')
    scheduler.fireUntil(Math.min(due, first.expiresAt - 5001))
    if (due > first.expiresAt - 5001) clock.set(first.expiresAt)
    const next = await s.getToken()
    await waitUntil(() => s.events.at(-1)?.outcome === 'success', 'recovery')
    const fresh = await s.getToken()
    assert.notEqual(fresh, first.accessToken)
    assert.ok(server.requests.length > before)
    assert.ok(next.length > 0)
  })

  test('once the token has expired and the server is down, getToken fails instead of handing out the stale token', async () => {
    const s = source({ retry: { maxAttempts: 1 }, backgroundRefresh: false })
    const first = await s.getAccessToken()
    await server.stop()
    try {
      clock.set(first.expiresAt)
      await assert.rejects(s.getToken(), (err: unknown) => err instanceof AegisUnavailableError && err.code === 'network_error')
    } finally {
      await server.restart()
    }
    assert.notEqual(await s.getToken(), first.accessToken)
  })

  test('invalidate() makes the next getToken fetch a new token; invalidating an old token is a no-op', async () => {
    const s = source()
    const a = await s.getToken()
    s.invalidate('some-other-token')
    assert.equal(await s.getToken(), a)
    s.invalidate(a)
    const b = await s.getToken()
    assert.notEqual(a, b)
    s.invalidate(a)
    assert.equal(await s.getToken(), b)
    assert.equal(server.requests.length, 2)
  })

  test('discovers the token endpoint once from RFC 8414 metadata', async () => {
    const before = server.metadataRequests
    const s = source({ tokenEndpoint: undefined })
    await s.getToken()
    s.invalidate(await s.getToken())
    await s.getToken()
    assert.equal(server.metadataRequests - before, 1)
    assert.equal(server.requests.length, 2)
  })

  test('metadata naming another issuer is refused (RFC 8414 §3.3)', async () => {
    server.metadataIssuer = 'https://evil.example'
    await assert.rejects(source({ tokenEndpoint: undefined }).getToken(), (err: unknown) => err instanceof AegisSdkError && err.code === 'discovery_failed')
    assert.equal(server.requests.length, 0)
  })

  test('close() cancels the background refresh and later calls fail', async () => {
    const s = source()
    await s.getToken()
    assert.equal(scheduler.size, 1)
    s.close()
    assert.equal(scheduler.size, 0)
    await assert.rejects(s.getToken(), (err: unknown) => err instanceof AegisSdkError && err.code === 'closed')
  })

  test('rejects bad options', () => {
    assert.throws(() => new ClientCredentialsSource({ issuer: 'ftp://x', clientId: 'a', clientSecret: 'b' }), TypeError)
    assert.throws(() => new ClientCredentialsSource({ issuer: server.issuer, clientId: '', clientSecret: 'b' }), TypeError)
    assert.throws(() => new ClientCredentialsSource({ issuer: server.issuer, clientId: 'a', clientSecret: 'b', refreshWindow: [0.9, 0.5] }), RangeError)
  })
})

describe('TokenExchangeSource', () => {
  test('sends an RFC 8693 exchange with the current subject token on each refresh', async () => {
    let n = 0
    const s = new TokenExchangeSource({
      issuer: server.issuer,
      tokenEndpoint: server.tokenEndpoint,
      subjectToken: () => `workload-jwt-${++n}`,
      clock,
      scheduler,
      audience: 'aegis-gateway',
    })
    open.push(s)
    const t = await s.getAccessToken()
    assert.equal(t.issuedTokenType, 'urn:ietf:params:oauth:token-type:access_token')
    s.invalidate(t.accessToken)
    await s.getToken()
    assert.equal(server.requests.length, 2)
    const p = server.requests[0]!.params
    assert.equal(p.grant_type, 'urn:ietf:params:oauth:grant-type:token-exchange')
    assert.equal(p.subject_token, 'workload-jwt-1')
    assert.equal(p.subject_token_type, 'urn:ietf:params:oauth:token-type:jwt')
    assert.equal(p.audience, 'aegis-gateway')
    assert.equal(server.requests[1]!.params.subject_token, 'workload-jwt-2')
  })
})

test('a very long lifetime does not overflow the refresh timer into a refresh loop', async () => {
  server.expiresIn = 60 * 60 * 24 * 365 // a year: the refresh point is beyond Node's 2^31-1 ms timer range
  const s = source()
  const t = await s.getAccessToken()
  assert.ok(scheduler.requested.at(-1)! <= 2_147_483_647)
  scheduler.fireUntil(clock.now() + 2_147_483_647)
  await new Promise((r) => setImmediate(r))
  assert.equal(server.requests.length, 1, 'the early wake-up re-arms instead of refreshing')
  assert.ok(scheduler.size === 1)
  scheduler.fireUntil(t.refreshAt)
  await waitUntil(() => s.events.length === 2, 'the refresh at its point')
  assert.equal(server.requests.length, 2)
})
