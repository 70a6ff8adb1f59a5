/**
 * MCP mode against a hand-written Streamable HTTP upstream (a real server on
 * loopback) that misbehaves on purpose: responses the gateway did not ask
 * for are never passed on unchecked, and the GET stream's notifications
 * still pass untouched.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http'
import { startGatewayEnv, type GatewayEnv, type RunningGateway } from '../../helpers/gateway-env.js'

interface Seen {
  method: string
  headers: IncomingHttpHeaders
  body: string
}

function sse(events: unknown[]): string {
  return events.map((e, i) => `id: ${i + 1}\nevent: message\ndata: ${JSON.stringify(e)}\n\n`).join('')
}

describe('MCP mode with a raw Streamable HTTP upstream', () => {
  let env: GatewayEnv
  let gw: RunningGateway
  let upstream: Server
  let token: string
  const seen: Seen[] = []

  before(async () => {
    upstream = createServer((req, res) => {
      let body = ''
      req.on('data', (c: Buffer) => {
        body += c.toString()
      })
      req.on('end', () => {
        seen.push({ method: req.method ?? '', headers: req.headers, body })
        if (req.method === 'GET' && req.headers['last-event-id'] === 'keep-open') {
          res.writeHead(200, { 'content-type': 'text/event-stream' })
          res.write(sse([{ jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data: 'hello' } }]))
          return
        }
        if (req.method === 'GET') {
          // A notification and a replayed response on the server-to-client stream.
          res.writeHead(200, { 'content-type': 'text/event-stream', 'mcp-session-id': 's-1' })
          res.end(
            sse([
              { jsonrpc: '2.0', method: 'notifications/tools/list_changed' },
              { jsonrpc: '2.0', id: 'old-call', result: { content: [{ type: 'text', text: 'secret' }] } },
            ]),
          )
          return
        }
        const msg = JSON.parse(body) as { id?: number; method?: string }
        if (msg.method === 'tools/list' && msg.id === 77) {
          res.writeHead(200, { 'content-type': 'text/plain' })
          res.end(JSON.stringify({ jsonrpc: '2.0', id: 77, result: { tools: [{ name: 'files.delete', inputSchema: { type: 'object' } }] } }))
          return
        }
        if (msg.method === 'tools/list') {
          res.writeHead(200, { 'content-type': 'text/event-stream', 'mcp-session-id': 's-1' })
          res.end(
            sse([
              { jsonrpc: '2.0', id: 999, result: { tools: [{ name: 'files.delete', inputSchema: { type: 'object' } }] } },
              {
                jsonrpc: '2.0',
                id: msg.id,
                result: {
                  tools: [
                    { name: 'crm.read', inputSchema: { type: 'object' } },
                    { name: 'files.delete', inputSchema: { type: 'object' } },
                  ],
                },
              },
            ]),
          )
          return
        }
        res.writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': 's-1' })
        res.end(JSON.stringify({ jsonrpc: '2.0', id: msg.id ?? null, result: {} }))
      })
    })
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r))
    const port = (upstream.address() as { port: number }).port
    env = await startGatewayEnv()
    const cred = await env.agent('raw-bot', ['crm.read'])
    gw = await env.startGateway({
      gateway: { routes: [{ path: '/mcp/raw', upstream: `http://127.0.0.1:${port}/rpc?x=1`, mode: 'mcp', allow_methods: ['ping', 'tools/list'] }] },
    })
    token = await env.token(cred)
  })
  after(async () => {
    await env?.close()
    upstream?.closeAllConnections()
    await new Promise<void>((r) => upstream?.close(() => r()))
  })

  const post = (body: unknown, headers: Record<string, string> = {}) =>
    fetch(`${gw.url}/mcp/raw`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${token}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        'mcp-session-id': 's-1',
        ...headers,
      },
      body: JSON.stringify(body),
    })

  test('tools/list over SSE: our response filtered, a foreign response replaced by an error', async () => {
    const res = await post({ jsonrpc: '2.0', id: 5, method: 'tools/list' }, { cookie: 'sid=abc', 'x-aegis-agent': 'someone-else' })
    assert.equal(res.status, 200)
    assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/)
    assert.equal(res.headers.get('mcp-session-id'), 's-1')
    const text = await res.text()
    const events = text
      .split('\n\n')
      .filter((e) => e.includes('data: '))
      .map((e) => JSON.parse(e.slice(e.indexOf('data: ') + 6)) as Record<string, any>)
    assert.equal(events.length, 2)
    assert.equal(events[0]!.id, 999)
    assert.equal(events[0]!.error.code, -32001)
    assert.equal(events[0]!.result, undefined)
    assert.deepEqual(
      events[1]!.result.tools.map((t: { name: string }) => t.name),
      ['crm.read'],
    )
    const up = seen.at(-1)!
    assert.equal(up.headers.authorization, undefined)
    assert.equal(up.headers.cookie, undefined)
    assert.equal(up.headers['x-aegis-agent'], 'raw-bot', "a client-sent x-aegis-agent is replaced by the gateway's")
    assert.equal(up.headers['mcp-session-id'], 's-1')
  })

  test('an answer that must be filtered but is neither JSON nor SSE is not passed on', async () => {
    const res = await post({ jsonrpc: '2.0', id: 77, method: 'tools/list' })
    assert.equal(res.status, 502)
    const text = await res.text()
    assert.ok(!text.includes('files.delete'))
    assert.equal((JSON.parse(text) as { error: { code: number } }).error.code, -32603)
  })

  test('the GET stream passes notifications and replaces replayed responses', async () => {
    const res = await fetch(`${gw.url}/mcp/raw`, { headers: { authorization: `Bearer ${token}`, accept: 'text/event-stream', 'mcp-session-id': 's-1' } })
    assert.equal(res.status, 200)
    const text = await res.text()
    assert.ok(text.includes('"method":"notifications/tools/list_changed"'))
    assert.ok(!text.includes('secret'))
    assert.match(text, /"id":"old-call","error":\{"code":-32001/)
    assert.equal(seen.at(-1)!.method, 'GET')
  })

  test('closing the gateway cuts an open GET stream instead of waiting for it', async () => {
    const other = await env.startGateway({
      gateway: { routes: [{ path: '/mcp/raw', upstream: `http://127.0.0.1:${(upstream.address() as { port: number }).port}/rpc`, mode: 'mcp' }] },
    })
    const res = await fetch(`${other.url}/mcp/raw`, {
      headers: { authorization: `Bearer ${token}`, accept: 'text/event-stream', 'mcp-session-id': 's-1', 'last-event-id': 'keep-open' },
    })
    assert.equal(res.status, 200)
    const reader = res.body!.getReader()
    const first = new TextDecoder().decode((await reader.read()).value)
    assert.match(first, /notifications\/message/)
    await other.close()
    // The stream ends (or errors) once the gateway is gone.
    await reader.read().then(
      () => {},
      () => {},
    )
  })

  test('methods outside allow_methods never reach the upstream; notifications get 403', async () => {
    const n = seen.length
    const r1 = await post({ jsonrpc: '2.0', id: 1, method: 'initialize', params: {} })
    assert.equal(r1.status, 200)
    assert.equal(((await r1.json()) as { error: { code: number } }).error.code, -32601)
    const r2 = await post({ jsonrpc: '2.0', method: 'notifications/initialized' })
    assert.equal(r2.status, 403)
    await r2.body?.cancel()
    // tools/call is not in this route's allow_methods either.
    const r3 = await post({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'crm.read', arguments: {} } })
    assert.equal(((await r3.json()) as { error: { code: number } }).error.code, -32601)
    assert.equal(seen.length, n)
    const ok = await post({ jsonrpc: '2.0', id: 3, method: 'ping' })
    assert.deepEqual(await ok.json(), { jsonrpc: '2.0', id: 3, result: {} })
    assert.equal(seen.at(-1)!.body, JSON.stringify({ jsonrpc: '2.0', id: 3, method: 'ping' }))
  })

  test('malformed messages get JSON-RPC -32600 and change nothing', async () => {
    const n = seen.length
    for (const bad of [
      { jsonrpc: '1.0', id: 1, method: 'ping' },
      { jsonrpc: '2.0', id: {}, method: 'ping' },
      { jsonrpc: '2.0', id: 1, method: 'ping', params: [1] },
      'ping',
    ]) {
      const r = await post(bad)
      assert.equal(r.status, 400)
      assert.equal(((await r.json()) as { error: { code: number } }).error.code, -32600)
    }
    const form = await fetch(`${gw.url}/mcp/raw`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: 'jsonrpc=2.0&id=1&method=ping',
    })
    assert.equal(form.status, 400)
    assert.equal(((await form.json()) as { error: { code: number } }).error.code, -32600)
    assert.equal(seen.length, n)
  })
})
