/**
 * AegisClient against real peers: a real token server and a small real
 * gateway / resource server speaking the docs/reference.md wire format. The same
 * flows run against the real control plane and gateway in
 * test/integration/sdk/client.test.ts.
 */
import { test, describe, before, after, beforeEach } from 'node:test'
import assert from 'node:assert/strict'
import { Readable } from 'node:stream'
import { AegisClient, AegisSdkError, type AuthorizeResult } from '../../../src/sdk/index.js'
import { startPeerTokenServer, type PeerTokenServer } from '../../integration/sdk/helpers/peer-token-server.js'
import { startPeerHttp, type PeerHttp, type Answer } from '../../integration/sdk/helpers/peer-http.js'

let tokens: PeerTokenServer
let peer: PeerHttp
const clients: AegisClient[] = []

before(async () => {
  tokens = await startPeerTokenServer({ now: () => Date.now() })
  tokens.clients.set('agent', 'secret')
  peer = await startPeerHttp(() => ({ status: 404 }))
})
after(async () => {
  for (const c of clients) c.close()
  await peer.close()
  await tokens.stop()
})
beforeEach(() => {
  peer.seen.length = 0
  tokens.requests.length = 0
})

function client(extra: Partial<ConstructorParameters<typeof AegisClient>[0]> = {}): AegisClient {
  const c = new AegisClient({
    issuer: tokens.issuer,
    tokenEndpoint: tokens.tokenEndpoint,
    clientId: 'agent',
    clientSecret: 'secret',
    gatewayUrl: peer.url,
    ...extra,
  })
  clients.push(c)
  return c
}

const bearerOf = (h: string | string[] | undefined): string => String(h).replace(/^Bearer /, '')
const invalidToken: Answer = {
  status: 401,
  body: { error: 'invalid_token', error_description: 'revoked' },
  headers: { 'www-authenticate': 'Bearer error="invalid_token", error_description="revoked"' },
}

describe('AegisClient.fetch', () => {
  test('attaches the bearer token; on 401 invalid_token refreshes once and retries once', async () => {
    const c = client()
    const firstToken = await c.getToken()
    peer.handler = (r) => (bearerOf(r.headers.authorization) === firstToken ? invalidToken : { status: 200, body: { ok: true } })
    const res = await c.fetch(`${peer.url}/tool`, {
      method: 'POST',
      body: JSON.stringify({ a: 1 }),
      headers: { 'content-type': 'application/json', 'x-keep': 'yes' },
    })
    assert.equal(res.status, 200)
    assert.deepEqual(await res.json(), { ok: true })
    assert.equal(peer.seen.length, 2)
    assert.equal(bearerOf(peer.seen[0]!.headers.authorization), firstToken)
    assert.notEqual(bearerOf(peer.seen[1]!.headers.authorization), firstToken)
    assert.equal(peer.seen[1]!.body, '{"a":1}')
    assert.equal(peer.seen[1]!.headers['x-keep'], 'yes')
    assert.equal(tokens.requests.length, 2)
  })

  test('a second invalid_token is returned, not retried again', async () => {
    peer.handler = () => invalidToken
    const res = await client().fetch(`${peer.url}/tool`)
    assert.equal(res.status, 401)
    assert.equal(peer.seen.length, 2)
  })

  test('a 401 without invalid_token (e.g. no challenge error) is not retried', async () => {
    peer.handler = () => ({ status: 401, headers: { 'www-authenticate': 'Bearer realm="tools"' } })
    const res = await client().fetch(`${peer.url}/tool`)
    assert.equal(res.status, 401)
    assert.equal(peer.seen.length, 1)
  })

  test('a stream body cannot be replayed: the 401 comes back unretried', async () => {
    peer.handler = () => invalidToken
    const body = Readable.toWeb(Readable.from([Buffer.from('chunk')])) as ReadableStream<Uint8Array>
    const res = await client().fetch(`${peer.url}/tool`, { method: 'POST', body, duplex: 'half' } as RequestInit)
    assert.equal(res.status, 401)
    assert.equal(peer.seen.length, 1)
  })

  test('a Request with a body is cloned so it can be repeated', async () => {
    const c = client()
    const firstToken = await c.getToken()
    peer.handler = (r) => (bearerOf(r.headers.authorization) === firstToken ? invalidToken : { status: 200, body: {} })
    const res = await c.fetch(new Request(`${peer.url}/tool`, { method: 'PUT', body: 'payload' }))
    assert.equal(res.status, 200)
    assert.equal(peer.seen[1]!.body, 'payload')
    assert.equal(peer.seen[1]!.method, 'PUT')
  })
})

describe('AegisClient.authorize', () => {
  const allow = { decision: 'allow', reasons: ['permit'], policy_version: 'v1', obligations: [], enforced: true }

  test('posts the action to /v1/authorize and returns the typed decision', async () => {
    peer.handler = () => ({ status: 200, body: allow })
    const d = await client().authorize({ tool: 'crm.read', params: { id: '42' } }, { resource: 'crm/42' })
    assert.equal(d.decision, 'allow')
    assert.equal(d.enforced, true)
    assert.equal(peer.seen[0]!.path, '/v1/authorize')
    assert.deepEqual(JSON.parse(peer.seen[0]!.body), { action: { tool: 'crm.read', params: { id: '42' } }, resource: 'crm/42' })
    assert.equal(peer.seen[0]!.headers['aegis-dry-run'], undefined)
  })

  test('client-wide dry run sends Aegis-Dry-Run: 1 and surfaces the would-be decision', async () => {
    const seen: AuthorizeResult[] = []
    peer.handler = () => ({ status: 200, body: { ...allow, decision: 'deny', reasons: ['forbid'], enforced: false } })
    const c = client({ dryRun: true, onDryRunDecision: (d) => seen.push(d) })
    const d = await c.authorize({ tool: 'payments.transfer', params: { amount: 10 } })
    assert.equal(peer.seen[0]!.headers['aegis-dry-run'], '1')
    assert.equal(d.decision, 'deny')
    assert.equal(seen.length, 1)
    assert.equal(seen[0]!.decision, 'deny')
    assert.equal(seen[0]!.enforced, false)
    await c.authorize({ tool: 'x' }, { dryRun: false })
    assert.equal(peer.seen[1]!.headers['aegis-dry-run'], undefined)
  })

  test('401 invalid_token from the gateway: one refresh, one retry', async () => {
    const c = client()
    const firstToken = await c.getToken()
    peer.handler = (r) => (bearerOf(r.headers.authorization) === firstToken ? invalidToken : { status: 200, body: allow })
    assert.equal((await c.authorize({ tool: 'crm.read' })).decision, 'allow')
    assert.equal(peer.seen.length, 2)
    peer.handler = () => invalidToken
    await assert.rejects(
      c.authorize({ tool: 'crm.read' }),
      (err: unknown) => err instanceof AegisSdkError && err.code === 'invalid_token' && err.status === 401,
    )
  })

  test('a malformed decision fails closed', async () => {
    peer.handler = () => ({ status: 200, body: { decision: 'maybe', enforced: true } })
    await assert.rejects(client().authorize({ tool: 'crm.read' }), (err: unknown) => err instanceof AegisSdkError && err.code === 'invalid_response')
  })

  test('400 from the gateway surfaces its OAuth error code', async () => {
    peer.handler = () => ({ status: 400, body: { error: 'invalid_request', error_description: 'action.tool missing' } })
    await assert.rejects(client().authorize({ tool: 'crm.read' }), (err: unknown) => err instanceof AegisSdkError && err.code === 'invalid_request')
  })

  test('429 from the gateway is retried after Retry-After', async () => {
    let n = 0
    peer.handler = () => (n++ === 0 ? { status: 429, body: { error: 'rate_limited' }, headers: { 'retry-after': '1' } } : { status: 200, body: allow })
    assert.equal((await client().authorize({ tool: 'crm.read' })).decision, 'allow')
    assert.equal(peer.seen.length, 2)
  })

  describe('waitForApproval', () => {
    const needed = (id: string) => ({ ...allow, decision: 'approval_needed', reasons: ['needs finance'], approval: { id, status_url: `/v1/approvals/${id}` } })

    test('polls status_url with the same kind of bearer, honours Retry-After, then repeats the exact call with Aegis-Override', async () => {
      let polls = 0
      peer.handler = (r) => {
        if (r.path === '/v1/authorize')
          return r.headers['aegis-override'] === 'override-123'
            ? { status: 200, body: { ...allow, reasons: ['approved'] } }
            : { status: 200, body: needed('ap1') }
        if (r.path === '/v1/approvals/ap1')
          return ++polls < 3
            ? { status: 200, body: { id: 'ap1', status: 'pending' }, headers: { 'retry-after': '0' } }
            : { status: 200, body: { id: 'ap1', status: 'approved', override_token: 'override-123' } }
        return { status: 404 }
      }
      const c = client()
      const d = await c.authorize({ tool: 'payments.transfer', params: { amount: 5000, to: 'acct-9' } }, { waitForApproval: true, timeoutMs: 20_000 })
      assert.equal(d.decision, 'allow')
      const authorizes = peer.seen.filter((r) => r.path === '/v1/authorize')
      assert.equal(authorizes.length, 2)
      assert.equal(authorizes[1]!.body, authorizes[0]!.body, 'exactly the same call')
      assert.equal(authorizes[1]!.headers['aegis-override'], 'override-123')
      const statusPolls = peer.seen.filter((r) => r.path === '/v1/approvals/ap1')
      assert.equal(statusPolls.length, 3)
      for (const p of statusPolls) assert.equal(bearerOf(p.headers.authorization), await c.getToken())
      assert.match(String(statusPolls[0]!.headers.prefer), /^wait=\d+$/)
    })

    test('a denied approval returns the approval_needed answer with outcome denied, and no override call', async () => {
      peer.handler = (r) => (r.path === '/v1/authorize' ? { status: 200, body: needed('ap2') } : { status: 200, body: { id: 'ap2', status: 'denied' } })
      const d = await client().authorize({ tool: 'payments.transfer' }, { waitForApproval: true })
      assert.equal(d.decision, 'approval_needed')
      assert.equal(d.approval?.outcome, 'denied')
      assert.equal(peer.seen.filter((r) => r.path === '/v1/authorize').length, 1)
    })

    test('still pending when timeoutMs runs out gives outcome timeout', async () => {
      peer.handler = (r) => (r.path === '/v1/authorize' ? { status: 200, body: needed('ap3') } : { status: 200, body: { id: 'ap3', status: 'pending' } })
      const d = await client().authorize({ tool: 'payments.transfer' }, { waitForApproval: true, timeoutMs: 1500 })
      assert.equal(d.approval?.outcome, 'timeout')
    })

    test('a long-polling server is asked again at once after it held the request', async () => {
      let polls = 0
      peer.handler = (r) => {
        if (r.path === '/v1/authorize') return r.headers['aegis-override'] ? { status: 200, body: allow } : { status: 200, body: needed('ap4') }
        return ++polls < 2
          ? { status: 200, body: { id: 'ap4', status: 'pending' }, headers: { 'preference-applied': 'wait=1' }, delayMs: 1100 }
          : { status: 200, body: { id: 'ap4', status: 'approved', override_token: 'ov' } }
      }
      const d = await client().authorize({ tool: 'payments.transfer' }, { waitForApproval: true, timeoutMs: 20_000 })
      assert.equal(d.decision, 'allow')
      assert.equal(polls, 2)
    })

    test('a status_url on a foreign origin is refused: the token never goes there', async () => {
      const foreign = await startPeerHttp(() => ({ status: 200, body: { id: 'x', status: 'approved', override_token: 'stolen' } }))
      try {
        peer.handler = () => ({ status: 200, body: { ...needed('ap5'), approval: { id: 'ap5', status_url: `${foreign.url}/v1/approvals/ap5` } } })
        await assert.rejects(
          client({ issuer: tokens.issuer }).authorize({ tool: 'payments.transfer' }, { waitForApproval: true }),
          (err: unknown) => err instanceof AegisSdkError && err.code === 'approval_url_untrusted',
        )
        assert.equal(foreign.seen.length, 0)
      } finally {
        await foreign.close()
      }
    })

    test('dry run never waits for an approval', async () => {
      peer.handler = () => ({ status: 200, body: { ...needed('ap6'), enforced: false } })
      const d = await client({ dryRun: true }).authorize({ tool: 'payments.transfer' }, { waitForApproval: true })
      assert.equal(d.decision, 'approval_needed')
      assert.equal(peer.seen.length, 1)
    })
  })
})
