import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { freePort, startGatewayEnv, type GatewayEnv, type RunningGateway } from '../../helpers/gateway-env.js'
import { skipWithoutNginx, startNginx, type Nginx } from '../../helpers/gateway-nginx.js'
import { startUpstream, type Upstream } from '../../helpers/gateway-upstream.js'

describe("nginx auth_request in front of an upstream, deciding with the gateway's ext-authz endpoint", { skip: skipWithoutNginx() }, () => {
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
    nginx = await startNginx(
      await freePort(),
      `
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
    }`,
    )
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

  test('the ext-authz endpoint itself: headers on allow, 403 JSON on deny', async () => {
    const ok = await fetch(`${gw.url}/v1/ext-authz/crm.read`, { headers: { authorization: `Bearer ${token}` } })
    assert.equal(ok.status, 200)
    assert.equal(ok.headers.get('x-aegis-agent'), 'nginx-bot')
    assert.equal(ok.headers.get('x-aegis-decision'), 'allow')
    const no = await fetch(`${gw.url}/v1/ext-authz/files.delete`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: '{"path":"/x"}',
    })
    assert.equal(no.status, 403)
    const body = (await no.json()) as { error: string; decision: string }
    assert.equal(body.error, 'access_denied')
    assert.equal(body.decision, 'deny')
    const bad = await fetch(`${gw.url}/v1/ext-authz/crm.read`, { headers: { authorization: 'Bearer x' } })
    assert.equal(bad.status, 401)
    assert.match(bad.headers.get('www-authenticate') ?? '', /error="invalid_token"/)
  })

  test("a caller's Aegis-Tool through a location that does not strip it: 403 tool mismatch, upstream never called", async () => {
    const count = upstream.seen.length
    const res = await fetch(`${nginx.url}/tools/files/secret`, { headers: { authorization: `Bearer ${token}`, 'aegis-tool': 'crm.read' } })
    assert.equal(res.status, 403)
    await res.arrayBuffer()
    assert.equal(upstream.seen.length, count)
  })

  test('the path decides: a header naming the same tool is fine, another tool is 403 tool mismatch, no path tool is 400', async () => {
    const same = await fetch(`${gw.url}/v1/ext-authz/crm.read`, { headers: { authorization: `Bearer ${token}`, 'aegis-tool': 'crm.read' } })
    assert.equal(same.status, 200)
    for (const path of ['files.delete', 'files.delete/-/tools/crm/x']) {
      const other = await fetch(`${gw.url}/v1/ext-authz/${path}`, { headers: { authorization: `Bearer ${token}`, 'aegis-tool': 'crm.read' } })
      assert.equal(other.status, 403)
      const body = (await other.json()) as { error: string; reasons: string[] }
      assert.equal(body.error, 'access_denied')
      assert.deepEqual(body.reasons, ['tool mismatch'])
    }
    // Repeated headers are never the path's tool either.
    const twice = await fetch(`${gw.url}/v1/ext-authz/crm.read`, {
      headers: [
        ['authorization', `Bearer ${token}`],
        ['aegis-tool', 'crm.read'],
        ['aegis-tool', 'crm.read'],
      ],
    })
    assert.equal(twice.status, 403)
    await twice.arrayBuffer()
    // Without gateway.extAuthz.toolHeader, a path that names no tool is refused whatever the header says.
    for (const path of ['', '/-', '/-/tools/crm/x']) {
      const none = await fetch(`${gw.url}/v1/ext-authz${path}`, { headers: { authorization: `Bearer ${token}`, 'aegis-tool': 'crm.read' } })
      assert.equal(none.status, 400)
      assert.equal(((await none.json()) as { error: string }).error, 'invalid_request')
    }
  })

  test('the tool ends at a `-` segment: what a proxy appended after it (Envoy path_prefix) is ignored', async () => {
    const ok = await fetch(`${gw.url}/v1/ext-authz/crm.read/-/files.delete?x=1`, { headers: { authorization: `Bearer ${token}` } })
    assert.equal(ok.status, 200)
    const no = await fetch(`${gw.url}/v1/ext-authz/files.delete/-/crm.read`, { headers: { authorization: `Bearer ${token}` } })
    assert.equal(no.status, 403)
    await no.arrayBuffer()
  })

  test('Aegis-Resource from a caller is refused unless the gateway is told to believe it', async () => {
    const res = await fetch(`${gw.url}/v1/ext-authz/crm.read`, { headers: { authorization: `Bearer ${token}`, 'aegis-resource': '/tools/crm/contacts' } })
    assert.equal(res.status, 400)
    assert.equal(((await res.json()) as { error: string }).error, 'invalid_request')
  })

  test('with gateway.extAuthz.toolHeader, a path without a tool takes Aegis-Tool; a path tool still wins', async () => {
    const trusting = await env.startGateway({ gateway: { extAuthz: { toolHeader: true, resourceHeader: true } } })
    try {
      const ok = await fetch(`${trusting.url}/v1/ext-authz/-/tools/crm/x`, {
        headers: { authorization: `Bearer ${token}`, 'aegis-tool': 'crm.read', 'aegis-resource': '/tools/crm/x' },
      })
      assert.equal(ok.status, 200)
      const no = await fetch(`${trusting.url}/v1/ext-authz`, { headers: { authorization: `Bearer ${token}`, 'aegis-tool': 'files.delete' } })
      assert.equal(no.status, 403)
      await no.arrayBuffer()
      const mismatch = await fetch(`${trusting.url}/v1/ext-authz/files.delete`, { headers: { authorization: `Bearer ${token}`, 'aegis-tool': 'crm.read' } })
      assert.equal(mismatch.status, 403)
      assert.deepEqual(((await mismatch.json()) as { reasons: string[] }).reasons, ['tool mismatch'])
      const missing = await fetch(`${trusting.url}/v1/ext-authz`, { headers: { authorization: `Bearer ${token}` } })
      assert.equal(missing.status, 400)
      await missing.arrayBuffer()
    } finally {
      await trusting.close()
    }
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

/** The README's nginx snippet (section "Gateway"), ports replaced by the test's. */
function readmeNginxSnippet(gatewayPort: string, upstreamPort: number): string {
  const readme = readFileSync(new URL('../../../README.md', import.meta.url), 'utf8')
  const m = /\n( *)```nginx\n([\s\S]*?)\n\1```/.exec(readme)
  if (!m) throw new Error('README.md has no nginx snippet')
  const indent = m[1]!
  const body = m[2]!
    .split('\n')
    .map((l) => (l.startsWith(indent) ? l.slice(indent.length) : l))
    .join('\n')
  assert.ok(body.includes('127.0.0.1:7401') && body.includes('127.0.0.1:9000'), 'the snippet names the gateway on 7401 and an upstream on 9000')
  return body.replaceAll('127.0.0.1:7401', `127.0.0.1:${gatewayPort}`).replaceAll('127.0.0.1:9000', `127.0.0.1:${upstreamPort}`)
}

describe("the README's nginx snippet in front of an upstream", { skip: skipWithoutNginx() }, () => {
  let env: GatewayEnv
  let gw: RunningGateway
  let upstream: Upstream
  let token: string
  const nginxes: Nginx[] = []

  before(async () => {
    env = await startGatewayEnv()
    token = await env.token(await env.agent('readme-bot', ['crm.read']))
    gw = await env.startGateway()
    upstream = await startUpstream()
  })
  after(async () => {
    for (const n of nginxes) await n.stop()
    await upstream?.close()
    await env?.close()
  })

  const start = async (strip: boolean): Promise<Nginx> => {
    let conf = readmeNginxSnippet(new URL(gw.url).port, upstream.port)
    if (!strip) {
      // The same file without the lines that drop the caller's copies: the gateway alone must still hold.
      const lines = conf.split('\n')
      conf = lines.filter((l) => !/proxy_set_header Aegis-(Tool|Resource) "";/.test(l)).join('\n')
      assert.equal(conf.split('\n').length, lines.length - 2)
    }
    const n = await startNginx(await freePort(), conf)
    nginxes.push(n)
    return n
  }

  for (const strip of [true, false]) {
    test(
      `a caller's Aegis-Tool naming an allowed tool on a denied path tool: 403, upstream never reached ` +
        `(${strip ? 'as written' : 'without the header-dropping lines'})`,
      async () => {
        const nginx = await start(strip)
        const count = upstream.seen.length
        const res = await fetch(`${nginx.url}/tools/payments/transfer`, {
          method: 'POST',
          headers: { authorization: `Bearer ${token}`, 'aegis-tool': 'crm.read', 'content-type': 'application/json' },
          body: '{"amount":1}',
        })
        assert.equal(res.status, 403)
        await res.arrayBuffer()
        const forged = await fetch(`${nginx.url}/tools/payments/transfer`, {
          headers: { authorization: `Bearer ${token}`, 'aegis-tool': 'crm.read', 'aegis-resource': '/tools/crm/contacts' },
        })
        assert.equal(forged.status, 403)
        await forged.arrayBuffer()
        assert.equal(upstream.seen.length, count, 'the upstream never saw the call')
        // The allowed location still works, with or without a (matching) header.
        const ok = await fetch(`${nginx.url}/tools/crm/contacts`, { headers: { authorization: `Bearer ${token}`, 'aegis-tool': 'crm.read' } })
        assert.equal(ok.status, 200)
        await ok.arrayBuffer()
        assert.equal(upstream.seen.at(-1)!.url, '/tools/crm/contacts')
        // The authorization location is internal: a caller cannot reach it.
        const direct = await fetch(`${nginx.url}/_aegis/crm.read`, { headers: { authorization: `Bearer ${token}` } })
        assert.equal(direct.status, 404)
        await direct.arrayBuffer()
      },
    )
  }
})
