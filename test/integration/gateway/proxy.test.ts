import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { request as httpRequest } from 'node:http'
import { activatePolicy, eventually, authorize, startGatewayEnv, TEST_POLICY, type GatewayEnv, type RunningGateway } from '../../helpers/gateway-env.js'
import { startUpstream, type Upstream } from '../../helpers/gateway-upstream.js'

describe('reverse-proxy mode', () => {
  let env: GatewayEnv
  let gw: RunningGateway
  let upstream: Upstream
  let token: string

  before(async () => {
    env = await startGatewayEnv()
    upstream = await startUpstream()
    const cred = await env.agent('proxy-bot', ['crm.read', 'crm.update', 'payments.charge'])
    await activatePolicy(env, TEST_POLICY)
    gw = await env.startGateway({
      gateway: {
        routes: [
          { path: '/tools/crm', upstream: `${upstream.url}/api/crm`, mode: 'proxy', tool: 'crm.update' },
          { path: '/tools/any', upstream: upstream.url, mode: 'proxy' },
        ],
      },
    })
    token = await env.token(cred)
    await eventually(async () => (await authorize(gw.url, token, { action: { tool: 'crm.read' } })).body.policy_version !== 'none')
  })
  after(async () => {
    await upstream?.close()
    await env?.close()
  })

  test('an allowed call is forwarded: prefix mapped, token stripped, traceparent passed, spoofed x-aegis headers replaced', async () => {
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'
    const res = await fetch(`${gw.url}/tools/crm/contacts/7?full=1`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', traceparent, 'x-aegis-agent': 'someone-else' },
      body: JSON.stringify({ name: 'Ada' }),
    })
    assert.equal(res.status, 200)
    assert.equal(res.headers.get('x-upstream'), 'yes')
    const seen = upstream.seen.at(-1)!
    assert.equal(seen.url, '/api/crm/contacts/7?full=1')
    assert.deepEqual(JSON.parse(seen.body), { name: 'Ada' })
    assert.equal(seen.headers.authorization, undefined)
    assert.equal(seen.headers.traceparent, traceparent)
    assert.equal(seen.headers['x-aegis-agent'], 'proxy-bot')
    assert.equal(seen.headers['x-aegis-decision'], 'allow')
  })

  test('sanitize obligations are applied to the forwarded JSON body', async () => {
    const res = await fetch(`${gw.url}/tools/any/charge`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'aegis-tool': 'payments.charge' },
      body: JSON.stringify({ amount: 12, card_number: '4111111111111111' }),
    })
    assert.equal(res.status, 200)
    const seen = upstream.seen.at(-1)!
    assert.deepEqual(JSON.parse(seen.body), { amount: 12, card_number: '[REDACTED]' })
    assert.ok(!seen.body.includes('4111'))
    assert.equal(seen.headers['x-aegis-decision'], 'sanitize')
  })

  test('a denied call is blocked with 403 and never reaches the upstream', async () => {
    const count = upstream.seen.length
    const res = await fetch(`${gw.url}/tools/any/x`, { headers: { authorization: `Bearer ${token}`, 'aegis-tool': 'files.delete' } })
    assert.equal(res.status, 403)
    const body = (await res.json()) as { error: string; decision: string }
    assert.equal(body.error, 'access_denied')
    assert.equal(body.decision, 'deny')
    assert.equal(upstream.seen.length, count)
  })

  test('a bad token gets 401 and never reaches the upstream; a route without a tool needs Aegis-Tool', async () => {
    const count = upstream.seen.length
    const res = await fetch(`${gw.url}/tools/crm/x`, { headers: { authorization: 'Bearer nope' } })
    assert.equal(res.status, 401)
    assert.match(res.headers.get('www-authenticate') ?? '', /error="invalid_token"/)
    const noTool = await fetch(`${gw.url}/tools/any/x`, { headers: { authorization: `Bearer ${token}` } })
    assert.equal(noTool.status, 400)
    assert.equal(upstream.seen.length, count)
  })

  test('Aegis-Dry-Run cannot switch enforcement off in proxy mode', async () => {
    const count = upstream.seen.length
    const res = await fetch(`${gw.url}/tools/any/x`, { headers: { authorization: `Bearer ${token}`, 'aegis-tool': 'files.delete', 'aegis-dry-run': '1' } })
    assert.equal(res.status, 403)
    assert.equal(upstream.seen.length, count)
  })

  test('dot segments (plain or percent-encoded) are refused before anything is forwarded', async () => {
    const count = upstream.seen.length
    for (const path of ['/tools/crm/../../admin', '/tools/crm/%2e%2e/admin', '/tools/crm/.%2E%2fadmin']) {
      const status = await new Promise<number>((resolve, reject) => {
        const u = new URL(gw.url)
        const req = httpRequest({ host: u.hostname, port: u.port, path, method: 'GET', headers: { authorization: `Bearer ${token}` } }, (res) => {
          res.resume()
          resolve(res.statusCode ?? 0)
        })
        req.on('error', reject)
        req.end()
      })
      assert.equal(status, 400, path)
    }
    assert.equal(upstream.seen.length, count)
  })
})
