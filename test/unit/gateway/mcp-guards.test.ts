/** The pure checks of MCP mode: standard headers against the body, Host/Origin against a route. */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { classify, type ClientMessage } from '../../../src/gateway/modes/mcp/jsonrpc.js'
import { decodeHeaderValue, headerMismatch } from '../../../src/gateway/modes/mcp/standard-headers.js'
import { originPolicy, originRefusal } from '../../../src/gateway/modes/mcp/origin-guard.js'

const msg = (body: unknown): ClientMessage => {
  const m = classify(body)
  assert.notEqual(typeof m, 'string', String(m))
  return m as ClientMessage
}
const call = msg({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'crm.read', arguments: {} } })
const read = msg({ jsonrpc: '2.0', id: 2, method: 'resources/read', params: { uri: 'file:///a b.txt' } })
const b64 = (s: string): string => `=?base64?${Buffer.from(s).toString('base64')}?=`

describe('JSON-RPC classification', () => {
  test('a request method without an id is refused; notifications/* are notifications', () => {
    for (const method of ['tools/call', 'ping', 'initialize', 'notificationsX', 'notification/initialized']) {
      assert.match(String(classify({ jsonrpc: '2.0', method })), /request method: it needs an id/)
    }
    assert.equal((classify({ jsonrpc: '2.0', method: 'notifications/initialized' }) as ClientMessage).kind, 'notification')
    assert.equal(typeof classify({ jsonrpc: '2.0', id: null, method: 'tools/call' }), 'string')
  })
})

describe('MCP standard headers', () => {
  test('absent headers pass before 2026-07-28; matching ones pass', () => {
    assert.equal(headerMismatch({}, call), null)
    assert.equal(headerMismatch({ 'mcp-method': 'tools/call', 'mcp-name': 'crm.read' }, call), null)
    assert.equal(headerMismatch({ 'mcp-method': 'resources/read', 'mcp-name': b64('file:///a b.txt') }, read), null)
  })

  test('disagreement, malformed Base64, repeats and orphan names are refused', () => {
    assert.match(String(headerMismatch({ 'mcp-method': 'tools/list' }, call)), /Mcp-Method header does not match/)
    assert.match(String(headerMismatch({ 'mcp-name': 'crm.delete' }, call)), /Mcp-Name header does not match params.name/)
    assert.match(String(headerMismatch({ 'mcp-name': 'file:///other' }, read)), /params.uri/)
    assert.match(String(headerMismatch({ 'mcp-method': 'tools/call, tools/call' }, call)), /does not match/)
    assert.match(String(headerMismatch({ 'mcp-method': ['tools/call', 'tools/call'] }, call)), /malformed/)
    assert.match(String(headerMismatch({ 'mcp-name': 'crm.read' }, msg({ jsonrpc: '2.0', id: 3, method: 'tools/list' }))), /names something the body does not/)
    assert.match(String(headerMismatch({ 'mcp-method': 'ping' }, msg({ jsonrpc: '2.0', id: 4, result: {} }))), /response/)
  })

  test('from 2026-07-28 the headers are required, and the header version must match _meta', () => {
    const modern = msg({
      jsonrpc: '2.0',
      id: 5,
      method: 'tools/call',
      params: { name: 'crm.read', _meta: { 'io.modelcontextprotocol/protocolVersion': '2026-07-28' } },
    })
    assert.match(String(headerMismatch({}, modern)), /Mcp-Method header is required/)
    assert.match(String(headerMismatch({ 'mcp-method': 'tools/call' }, modern)), /Mcp-Name header is required/)
    assert.equal(headerMismatch({ 'mcp-method': 'tools/call', 'mcp-name': 'crm.read' }, modern), null)
    assert.match(
      String(headerMismatch({ 'mcp-protocol-version': '2025-11-25', 'mcp-method': 'tools/call', 'mcp-name': 'crm.read' }, modern)),
      /MCP-Protocol-Version/,
    )
    assert.match(String(headerMismatch({ 'mcp-protocol-version': '2026-07-28' }, call)), /Mcp-Method header is required/)
  })

  test('Base64 values: canonical Base64 of UTF-8 only', () => {
    assert.equal(decodeHeaderValue(b64('ツール')), 'ツール')
    assert.equal(decodeHeaderValue('plain'), 'plain')
    assert.equal(decodeHeaderValue('=?base64?Y3JtLnJlYWQ?='), null, 'unpadded')
    assert.equal(decodeHeaderValue('=?base64?Y3JtLnJlYWR=?='), null, 'not canonical')
    assert.equal(decodeHeaderValue(`=?base64?${Buffer.from([0xff, 0xfe]).toString('base64')}?=`), null, 'not UTF-8')
  })
})

describe('MCP Host / Origin guard', () => {
  const route = { path: '/mcp', upstream: 'http://127.0.0.1:1/mcp', mode: 'mcp' as const }

  test('loopback gateway: loopback hosts only; Origin only the gateway itself', () => {
    const p = originPolicy(route, '127.0.0.1')
    assert.equal(originRefusal(p, { host: '127.0.0.1:7401' }), null)
    assert.equal(originRefusal(p, { host: '[::1]:7401', origin: 'http://[::1]:7401' }), null)
    assert.notEqual(originRefusal(p, { host: 'evil.example:7401' }), null)
    assert.notEqual(originRefusal(p, {}), null, 'no Host at all')
    assert.notEqual(originRefusal(p, { host: '127.0.0.1:7401', origin: 'http://127.0.0.1:7402' }), null, 'another port')
    assert.notEqual(originRefusal(p, { host: '127.0.0.1:7401', origin: 'https://127.0.0.1' }), null, 'the default port is not 7401')
    assert.notEqual(originRefusal(p, { host: '127.0.0.1:7401', origin: 'null' }), null)
  })

  test('public gateway: any host, but no Origin without allowed_origins', () => {
    const p = originPolicy(route, '0.0.0.0')
    assert.equal(originRefusal(p, { host: 'gw.example' }), null)
    assert.notEqual(originRefusal(p, { host: 'gw.example', origin: 'https://gw.example' }), null)
    const q = originPolicy({ ...route, allowed_origins: ['https://App.example'] }, '0.0.0.0')
    assert.equal(originRefusal(q, { host: 'gw.example', origin: 'https://app.example' }), null)
    assert.notEqual(originRefusal(q, { host: 'gw.example', origin: 'https://app.example.evil' }), null)
  })

  test('allowed_hosts: same origin allowed on a listed host, default ports matched', () => {
    const p = originPolicy({ ...route, allowed_hosts: ['gw.example'] }, '0.0.0.0')
    assert.equal(originRefusal(p, { host: 'gw.example', origin: 'https://gw.example' }), null)
    assert.equal(originRefusal(p, { host: 'GW.example:443', origin: 'https://gw.example' }), null)
    assert.notEqual(originRefusal(p, { host: 'other.example', origin: 'https://other.example' }), null)
    // loadConfig refuses such an entry; one that reaches the guard anyway is left out, so it admits nothing.
    const q = originPolicy({ ...route, allowed_hosts: ['gw.example:443'] }, '0.0.0.0')
    assert.notEqual(originRefusal(q, { host: 'gw.example:443' }), null)
    assert.notEqual(originRefusal(q, { host: 'gw.example' }), null)
  })
})
