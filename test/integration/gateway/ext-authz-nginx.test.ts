import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { freePort, startGatewayEnv, type GatewayEnv, type RunningGateway } from '../../helpers/gateway-env.js'
import { skipWithoutNginx, startNginx, type Nginx } from '../../helpers/gateway-nginx.js'
import { startUpstream, type Upstream } from '../../helpers/gateway-upstream.js'

describe('nginx auth_request in front of an upstream, deciding with the gateway\'s ext-authz endpoint', { skip: skipWithoutNginx() }, () => {
  let env: GatewayEnv
  let gw: RunningGateway
  let upstream: Upstream
  let nginx: Nginx
  let token: string

  before(async () => {
    env = await startGatewayEnv()
    const cred = await env.agent('nginx-bot', ['crm.read'])
    gw = await env.startGateway()
    token = await env.token(cred)
    upstream = await startUpstream()
    const gwPort = new URL(gw.url).port
    nginx = await startNginx(await freePort(), `
    location /tools/crm/ {
      set $aegis_tool crm.read;
      auth_request /_aegis;
      auth_request_set $aegis_agent $upstream_http_x_aegis_agent;
      auth_request_set $aegis_tenant $upstream_http_x_aegis_tenant;
      auth_request_set $aegis_decision $upstream_http_x_aegis_decision;
      proxy_set_header X-Aegis-Agent $aegis_agent;
      proxy_set_header X-Aegis-Tenant $aegis_tenant;
      proxy_set_header X-Aegis-Decision $aegis_decision;
      proxy_set_header Authorization "";
      proxy_pass http://127.0.0.1:${upstream.port};
    }
    location /tools/files/ {
      set $aegis_tool files.delete;
      auth_request /_aegis;
      proxy_pass http://127.0.0.1:${upstream.port};
    }
    location = /_aegis {
      internal;
      proxy_pass http://127.0.0.1:${gwPort}/v1/ext-authz/$aegis_tool;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-URI $request_uri;
    }`)
  })
  after(async () => {
    await nginx?.stop()
    await upstream?.close()
    await env?.close()
  })

  test('allowed: 200 from the upstream, which gets the agent and tenant and no token', async () => {
    const res = await fetch(`${nginx.url}/tools/crm/contacts?q=1`, { headers: { authorization: `Bearer ${token}` } })
    assert.equal(res.status, 200)
    assert.equal(res.headers.get('x-upstream'), 'yes')
    const seen = upstream.seen.at(-1)!
    assert.equal(seen.url, '/tools/crm/contacts?q=1')
    assert.equal(seen.headers['x-aegis-agent'], 'nginx-bot')
    assert.equal(seen.headers['x-aegis-tenant'], env.tenant)
    assert.equal(seen.headers['x-aegis-decision'], 'allow')
    assert.equal(seen.headers.authorization, undefined)
  })

  test('bad or missing token: 401, upstream never called', async () => {
    const count = upstream.seen.length
    for (const headers of [{} as Record<string, string>, { authorization: 'Bearer nope' }, { authorization: `Bearer ${token.slice(0, -3)}abc` }]) {
      const res = await fetch(`${nginx.url}/tools/crm/contacts`, { headers })
      assert.equal(res.status, 401)
      await res.arrayBuffer()
    }
    assert.equal(upstream.seen.length, count)
  })

  test('denied tool: 403, upstream never called', async () => {
    const count = upstream.seen.length
    const res = await fetch(`${nginx.url}/tools/files/secret`, { headers: { authorization: `Bearer ${token}` } })
    assert.equal(res.status, 403)
    await res.arrayBuffer()
    assert.equal(upstream.seen.length, count)
  })

  test('the ext-authz endpoint itself: headers on allow, Aegis-Tool header, 403 JSON on deny', async () => {
    const ok = await fetch(`${gw.url}/v1/ext-authz/anything`, { headers: { authorization: `Bearer ${token}`, 'aegis-tool': 'crm.read' } })
    assert.equal(ok.status, 200)
    assert.equal(ok.headers.get('x-aegis-agent'), 'nginx-bot')
    assert.equal(ok.headers.get('x-aegis-decision'), 'allow')
    const no = await fetch(`${gw.url}/v1/ext-authz/files.delete`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: '{"path":"/x"}' })
    assert.equal(no.status, 403)
    const body = await no.json() as { error: string; decision: string }
    assert.equal(body.error, 'access_denied')
    assert.equal(body.decision, 'deny')
    const bad = await fetch(`${gw.url}/v1/ext-authz/crm.read`, { headers: { authorization: 'Bearer x' } })
    assert.equal(bad.status, 401)
    assert.match(bad.headers.get('www-authenticate') ?? '', /error="invalid_token"/)
  })

  test('in shadow mode ext-authz lets a denied call through and says so in its headers', async () => {
    const shadow = await env.startGateway({ gateway: { shadow: true } })
    try {
      const res = await fetch(`${shadow.url}/v1/ext-authz/files.delete`, { headers: { authorization: `Bearer ${token}` } })
      assert.equal(res.status, 200)
      assert.equal(res.headers.get('x-aegis-decision'), 'deny')
      assert.equal(res.headers.get('x-aegis-enforced'), 'false')
    } finally {
      await shadow.close()
    }
  })
})
