/**
 * MCP mode: the call that reaches the tool server is exactly the call that
 * was decided (issue 13, item 3). Against real upstreams: the official SDK's
 * McpServer (counting every JSON-RPC message its transport delivers) and a
 * hand-written Streamable HTTP server that answers with error statuses on
 * purpose.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http'
import { request } from 'undici'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { eventually, startGatewayEnv, type GatewayEnv, type RunningGateway } from '../../helpers/gateway-env.js'
import { CONTACT, startMcpUpstream, type McpUpstream } from './upstream.js'

const CEDAR = `
@id("crm-read")
@sanitize("redact:/result/ssn, redact:/result/contacts/*/ssn")
permit (principal, action == Action::"crm.read", resource);

@id("crm-search")
permit (principal, action == Action::"crm.search", resource);

@id("crm-delete")
permit (principal, action == Action::"crm.delete", resource);

@id("crm-delete-never")
forbid (principal, action == Action::"crm.delete", resource);
`
const CAPABILITIES = ['crm.read', 'crm.search', 'crm.delete']
const SSNS = [CONTACT.ssn, ...CONTACT.contacts.map((c) => c.ssn)]
const ACCEPT = 'application/json, text/event-stream'

async function withPolicy(env: GatewayEnv, gw: RunningGateway): Promise<void> {
  const uploaded = await env.admin('POST', `/tenants/${env.tenant}/policies`, { version: '2026-11-30.1', cedar: CEDAR })
  await env.admin('POST', `/tenants/${env.tenant}/policies/${String(uploaded.id)}/activate`)
  await eventually(async () => gw.gw.deps.state.policyFor(env.tenant)?.version === '2026-11-30.1')
}

interface RpcAnswer {
  status: number
  headers: IncomingHttpHeaders
  text: string
  json(): { id?: unknown; result?: any; error?: { code: number; message: string } }
}

/** A raw POST (undici, so `Host` can be set), answering status, headers and body. */
async function post(url: string, body: unknown, headers: Record<string, string>): Promise<RpcAnswer> {
  const res = await request(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: ACCEPT, ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  })
  const text = await res.body.text()
  return { status: res.statusCode, headers: res.headers, text, json: () => JSON.parse(text) as ReturnType<RpcAnswer['json']> }
}

describe('MCP mode in front of the official SDK server', () => {
  let env: GatewayEnv
  let gw: RunningGateway
  let upstream: McpUpstream
  let token: string
  let client: Client
  let transport: StreamableHTTPClientTransport
  const route = '/mcp/crm'
  let url: string
  let auth: Record<string, string>
  // POSTs and DELETEs only: the SDK client opens (and may reopen) its GET stream on its own schedule.
  const reached = (): number => upstream.requests.filter((r) => r.method !== 'GET').length

  before(async () => {
    upstream = await startMcpUpstream()
    env = await startGatewayEnv()
    const cred = await env.agent('enforce-bot', CAPABILITIES)
    gw = await env.startGateway({ gateway: { routes: [{ path: route, upstream: upstream.url, mode: 'mcp' }] } })
    await withPolicy(env, gw)
    token = await env.token(cred)
    url = gw.url + route
    client = new Client({ name: 'enforce-test', version: '1.0.0' })
    transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers: { authorization: `Bearer ${token}` } } })
    await client.connect(transport)
    auth = { authorization: `Bearer ${token}`, 'mcp-session-id': transport.sessionId!, 'mcp-protocol-version': '2025-11-25' }
  })
  after(async () => {
    await client?.close().catch(() => {})
    await env?.close()
    await upstream?.close()
  })

  test('a tools/call without an id (a notification) is refused with 400 -32600 and never reaches the server; notifications/* pass', async () => {
    const http = reached()
    const messages = upstream.messages.length
    for (const name of ['crm.delete', 'crm.search']) {
      const res = await post(url, { jsonrpc: '2.0', method: 'tools/call', params: { name, arguments: { id: 'c1' } } }, auth)
      assert.equal(res.status, 400)
      const body = res.json()
      assert.equal(body.error?.code, -32600)
      assert.match(body.error!.message, /request method: it needs an id/)
    }
    for (const method of ['ping', 'tools/list', 'initialize']) {
      const res = await post(url, { jsonrpc: '2.0', method }, auth)
      assert.equal(res.status, 400)
      assert.equal(res.json().error?.code, -32600)
    }
    assert.equal(reached(), http, 'no HTTP request reached the server')
    assert.equal(upstream.messages.length, messages, 'no message reached the server')
    assert.ok(!upstream.messages.some((m) => m.method === 'tools/call' && m.id === undefined))
    // The same call with an id is decided: crm.delete is forbidden, so it never runs either.
    const decided = (await client.callTool({ name: 'crm.delete', arguments: { id: 'c1' } })) as { isError?: boolean }
    assert.equal(decided.isError, true)
    assert.ok(!upstream.calls.some((c) => c.tool === 'crm.delete'))
    // notifications/* still pass as notifications.
    const sent = upstream.messages.length
    const res = await post(url, { jsonrpc: '2.0', method: 'notifications/roots/list_changed' }, auth)
    assert.equal(res.status, 202)
    await eventually(async () => upstream.messages.length > sent)
    assert.equal(upstream.messages.at(-1)!.method, 'notifications/roots/list_changed')
  })

  test('Mcp-Method / Mcp-Name that disagree with the body get 400 -32020 and never reach the server', async () => {
    const http = reached()
    const call = { jsonrpc: '2.0', id: 41, method: 'tools/call', params: { name: 'crm.delete', arguments: {} } }
    const cases: Array<Record<string, string>> = [
      { 'mcp-method': 'tools/list' },
      { 'mcp-method': 'tools/call', 'mcp-name': 'crm.search' },
      { 'mcp-method': 'tools/call', 'mcp-name': `=?base64?${Buffer.from('crm.search').toString('base64')}?=` },
      { 'mcp-method': 'tools/call', 'mcp-name': '=?base64?not base64?=' },
    ]
    for (const h of cases) {
      const res = await post(url, call, { ...auth, ...h })
      assert.equal(res.status, 400, JSON.stringify(h))
      const body = res.json()
      assert.equal(body.id, 41)
      assert.equal(body.error?.code, -32020)
    }
    // A name on a method that has none, and a method on a notification that is another one.
    const list = await post(url, { jsonrpc: '2.0', id: 42, method: 'tools/list' }, { ...auth, 'mcp-method': 'tools/list', 'mcp-name': 'crm.delete' })
    assert.equal(list.status, 400)
    const note = await post(url, { jsonrpc: '2.0', method: 'notifications/roots/list_changed' }, { ...auth, 'mcp-method': 'tools/call' })
    assert.equal(note.status, 400)
    assert.equal(note.json().error?.code, -32020)
    assert.equal(reached(), http)
  })

  test('matching Mcp-Method / Mcp-Name (plain or Base64) pass, and reach the server with the call', async () => {
    for (const name of ['crm.search', `=?base64?${Buffer.from('crm.search').toString('base64')}?=`]) {
      const res = await post(
        url,
        { jsonrpc: '2.0', id: 43, method: 'tools/call', params: { name: 'crm.search', arguments: { q: 'acme' } } },
        { ...auth, 'mcp-method': 'tools/call', 'mcp-name': name },
      )
      assert.equal(res.status, 200)
      assert.ok(res.text.includes('"id":43') && !res.text.includes('"error"'), res.text)
      const seen = upstream.requests.at(-1)!
      assert.equal(seen.headers['mcp-method'], 'tools/call')
      assert.equal(seen.headers['mcp-name'], name)
    }
  })

  test('a 2026-07-28 request must carry Mcp-Method (and Mcp-Name when it names something), matching its _meta version', async () => {
    const http = reached()
    const meta = { 'io.modelcontextprotocol/protocolVersion': '2026-07-28' }
    const call = { jsonrpc: '2.0', id: 44, method: 'tools/call', params: { name: 'crm.search', arguments: {}, _meta: meta } }
    const noMethod = await post(url, call, { authorization: `Bearer ${token}` })
    assert.equal(noMethod.status, 400)
    assert.match(noMethod.json().error!.message, /Mcp-Method header is required/)
    const noName = await post(url, call, { authorization: `Bearer ${token}`, 'mcp-method': 'tools/call' })
    assert.equal(noName.status, 400)
    assert.match(noName.json().error!.message, /Mcp-Name header is required/)
    const otherVersion = await post(url, call, {
      authorization: `Bearer ${token}`,
      'mcp-method': 'tools/call',
      'mcp-name': 'crm.search',
      'mcp-protocol-version': '2025-11-25',
    })
    assert.equal(otherVersion.status, 400)
    assert.equal(otherVersion.json().error?.code, -32020)
    assert.equal(reached(), http)
  })

  test('DNS rebinding: a foreign Host or Origin gets 403 before anything else and never reaches the server', async () => {
    const http = reached()
    const init = {
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'rebind', version: '1' } },
    }
    const evil = 'evil.example.com'
    for (const h of [{ host: evil, origin: `http://${evil}` }, { origin: `http://${evil}` }, { host: evil }, { origin: 'null' }] as Array<
      Record<string, string>
    >) {
      const res = await post(url, init, { authorization: `Bearer ${token}`, ...h })
      assert.equal(res.status, 403, JSON.stringify(h))
      assert.equal(res.json().error?.code, -32000)
    }
    // No token needed to be refused, and the GET stream and DELETE are guarded too.
    assert.equal((await post(url, init, { host: evil, origin: `http://${evil}` })).status, 403)
    for (const method of ['GET', 'DELETE'] as const) {
      const res = await request(url, { method, headers: { ...auth, accept: 'text/event-stream', origin: `http://${evil}` } })
      assert.equal(res.statusCode, 403)
      await res.body.dump()
    }
    assert.equal(reached(), http)
    // The gateway's own origin and loopback names pass (the conformance suite's "valid localhost" check).
    const port = new URL(gw.url).port
    for (const h of [
      { host: `127.0.0.1:${port}`, origin: `http://127.0.0.1:${port}` },
      { host: `localhost:${port}`, origin: `http://localhost:${port}` },
      { host: `localhost:${port}` },
    ] as Array<Record<string, string>>) {
      const res = await post(url, init, { authorization: `Bearer ${token}`, ...h })
      assert.equal(res.status, 200, JSON.stringify(h))
    }
  })

  test('allowed_origins and allowed_hosts replace the defaults, per route', async () => {
    const other = await env.startGateway({
      gateway: {
        routes: [
          { path: '/mcp/app', upstream: upstream.url, mode: 'mcp', allowed_origins: ['https://app.example'], allowed_hosts: ['gw.example', '127.0.0.1'] },
          { path: '/mcp/plain', upstream: upstream.url, mode: 'mcp' },
        ],
      },
    })
    try {
      const ping = { jsonrpc: '2.0', id: 2, method: 'ping' }
      const h = { authorization: `Bearer ${token}` }
      const port = new URL(other.url).port
      const app = `${other.url}/mcp/app`
      // Past the guard the upstream answers (it refuses a ping outside a session): anything but the gateway's 403.
      const passes = async (target: string, headers: Record<string, string>): Promise<boolean> => {
        const n = reached()
        const res = await post(target, ping, { ...h, ...headers })
        if (res.status === 403) {
          assert.equal(res.json().error?.code, -32000)
          assert.equal(reached(), n)
          return false
        }
        assert.equal(reached(), n + 1)
        return true
      }
      assert.equal(await passes(app, { host: 'gw.example', origin: 'https://app.example' }), true)
      assert.equal(await passes(app, { host: 'gw.example:8443', origin: 'https://APP.example:443/' }), true)
      assert.equal(await passes(app, { host: 'gw.example', origin: 'https://other.example' }), false)
      assert.equal(await passes(app, { host: `127.0.0.1:${port}`, origin: `http://127.0.0.1:${port}` }), false, 'only the listed origins')
      assert.equal(await passes(app, { host: 'localhost' }), false, 'only the listed hosts')
      assert.equal(await passes(`${other.url}/mcp/plain`, { host: 'gw.example' }), false, 'the other route keeps the loopback default')
      assert.equal(await passes(`${other.url}/mcp/plain`, { host: `localhost:${port}` }), true)
    } finally {
      await other.close()
    }
  })
})

describe('MCP mode in front of an upstream that answers error statuses', () => {
  let env: GatewayEnv
  let gw: RunningGateway
  let upstream: Server
  let token: string
  let url: string
  const seen: Array<{ headers: IncomingHttpHeaders; body: string }> = []

  const result = (id: unknown) => ({ jsonrpc: '2.0', id, result: { content: [{ type: 'text', text: JSON.stringify(CONTACT) }], structuredContent: CONTACT } })

  before(async () => {
    upstream = createServer((req, res) => {
      let body = ''
      req.on('data', (c: Buffer) => {
        body += c.toString()
      })
      req.on('end', () => {
        seen.push({ headers: req.headers, body })
        const msg = JSON.parse(body) as { id: number; params?: { arguments?: { mode?: string } } }
        switch (msg.params?.arguments?.mode) {
          case 'json500':
            res.writeHead(500, { 'content-type': 'application/json' }).end(JSON.stringify(result(msg.id)))
            return
          case 'sse500':
            res.writeHead(500, { 'content-type': 'text/event-stream' }).end(`event: message\ndata: ${JSON.stringify(result(msg.id))}\n\n`)
            return
          case 'json422':
            res.writeHead(422, { 'content-type': 'application/json; charset=utf-8' }).end(JSON.stringify([result(msg.id)]))
            return
          case 'html503':
            res.writeHead(503, { 'content-type': 'text/html' }).end(`<p>upstream broke while reading ${CONTACT.ssn}</p>`)
            return
          case 'detail400':
            res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ detail: `bad contact ${CONTACT.ssn}` }))
            return
          case 'sessionless404':
            res
              .writeHead(404, { 'content-type': 'application/json' })
              .end(JSON.stringify({ jsonrpc: '2.0', id: null, error: { code: -32001, message: 'Session not found' } }))
            return
          case 'empty404':
            res.writeHead(404).end()
            return
          default:
            res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(result(msg.id)))
        }
      })
    })
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r))
    env = await startGatewayEnv()
    const cred = await env.agent('status-bot', CAPABILITIES)
    gw = await env.startGateway({
      gateway: { routes: [{ path: '/mcp/raw', upstream: `http://127.0.0.1:${(upstream.address() as { port: number }).port}/rpc`, mode: 'mcp' }] },
    })
    await withPolicy(env, gw)
    token = await env.token(cred)
    url = `${gw.url}/mcp/raw`
  })
  after(async () => {
    await env?.close()
    upstream?.closeAllConnections()
    await new Promise<void>((r) => upstream?.close(() => r()))
  })

  const read = (mode: string, id = 7) =>
    post(url, { jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'crm.read', arguments: { mode } } }, { authorization: `Bearer ${token}` })
  const clean = (text: string): void => {
    for (const ssn of SSNS) assert.ok(!text.includes(ssn), `${ssn} leaked: ${text}`)
  }
  const redacted = {
    name: 'Ada',
    ssn: '[REDACTED]',
    contacts: [
      { name: 'Bob', ssn: '[REDACTED]' },
      { name: 'Eve', ssn: '[REDACTED]' },
    ],
  }

  test('a JSON result under HTTP 500 is still redacted, the status kept', async () => {
    const res = await read('json500')
    assert.equal(res.status, 500)
    clean(res.text)
    assert.deepEqual(res.json().result.structuredContent, redacted)
    assert.deepEqual(JSON.parse(res.json().result.content[0].text), redacted)
    const ok = await read('ok')
    assert.equal(ok.status, 200)
    assert.deepEqual(ok.json().result.structuredContent, redacted)
  })

  test('an SSE result under HTTP 500, and a JSON array under 422, are still redacted', async () => {
    const sse = await read('sse500')
    assert.equal(sse.status, 500)
    clean(sse.text)
    const data = sse.text.split('\n').find((l) => l.startsWith('data: '))!
    assert.deepEqual((JSON.parse(data.slice(6)) as { result: { structuredContent: unknown } }).result.structuredContent, redacted)
    const arr = await read('json422')
    assert.equal(arr.status, 422)
    clean(arr.text)
  })

  test('an error answer the gateway cannot check keeps its status and loses its body; one without a result passes', async () => {
    for (const [mode, status] of [
      ['html503', 503],
      ['detail400', 400],
    ] as const) {
      const res = await read(mode, 9)
      assert.equal(res.status, status)
      clean(res.text)
      const body = res.json()
      assert.equal(body.id, 9)
      assert.equal(body.error?.code, -32603)
    }
    // What carries no result passes as it is: a session error (id null), an empty 404.
    const gone = await read('sessionless404')
    assert.equal(gone.status, 404)
    assert.deepEqual(gone.json(), { jsonrpc: '2.0', id: null, error: { code: -32001, message: 'Session not found' } })
    const empty = await read('empty404')
    assert.equal(empty.status, 404)
    assert.equal(empty.text, '')
  })
})
