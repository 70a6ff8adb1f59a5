/**
 * The invariant of enforcement, generated: for every entry point that
 * forwards (reverse proxy, MCP) and for /v1/authorize, whatever the content
 * type, query string, duplicate JSON keys, unicode escapes, number
 * spellings, nesting, size and steering headers of a request,
 *   - what the upstream receives is byte for byte the re-serialization of
 *     what the policy evaluated (after sanitize), and
 *   - a call the policy refuses never reaches the upstream.
 * The policy engine is the real Cedar engine; it is only wrapped to record
 * each request it evaluated and its answer. Bounded runs with a fixed seed
 * (AEGIS_PROPERTY_SEED / AEGIS_PROPERTY_RUNS override them); fast-check
 * prints the seed and the shrunk counterexample on failure.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { createServer, request as httpRequest, type Server } from 'node:http'
import fc from 'fast-check'
import { CedarCompiler } from '../../../src/policy/cedar/engine.js'
import type { PolicyBundleSource, PolicyCompiler, PolicyEngine, PolicyRequest, PolicyResult } from '../../../src/policy/types.js'
import { activatePolicy, authorize, eventually, startGatewayEnv, type GatewayEnv, type RunningGateway } from '../../helpers/gateway-env.js'

const SEED = Number(process.env.AEGIS_PROPERTY_SEED ?? 20261206)
const RUNS = Number(process.env.AEGIS_PROPERTY_RUNS ?? 300)

const POLICY = `
@id("list")
@sanitize("redact:/params/secret")
permit (principal, action == Action::"crm.list", resource)
when { context.params has limit && context.params.limit <= 100 };

@id("list-no-query-limit")
forbid (principal, action == Action::"crm.list", resource)
when { context has http && context.http.query has limit };

@id("list-get-only-below")
forbid (principal, action == Action::"crm.list", resource)
when { context has http && context.http.path like "/admin*" };

@id("export")
permit (principal, action == Action::"crm.export", resource)
when { context.params has format && context.params.format == "csv" };
`

interface Evaluated {
  request: PolicyRequest
  result: PolicyResult
}

/** Cedar, recording what it was asked and what it answered (the thing under test is the gateway, not the engine). */
function recordingCompiler(log: Evaluated[]): PolicyCompiler {
  const real = new CedarCompiler()
  return {
    compile(bundle: PolicyBundleSource): PolicyEngine {
      const engine = real.compile(bundle)
      return {
        evaluate(request: PolicyRequest): PolicyResult {
          const result = engine.evaluate(request)
          log.push({ request: structuredClone(request), result: structuredClone(result) })
          return result
        },
      }
    },
  }
}

interface Received {
  method: string
  url: string
  contentType: string | undefined
  body: Buffer
}

function startRecorder(answer: (body: Buffer) => { status: number; body: string }): Promise<{ server: Server; url: string; seen: Received[] }> {
  const seen: Received[] = []
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const body = Buffer.concat(chunks)
      seen.push({ method: req.method ?? '', url: req.url ?? '', contentType: req.headers['content-type'], body })
      const a = answer(body)
      res.writeHead(a.status, { 'content-type': 'application/json' })
      res.end(a.body)
    })
  })
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve({ server, url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, seen })),
  )
}

/** The test's own re-serialization (not the gateway's code): one canonical encoding of path and query. */
function serializePath(path: string): string {
  return path === '' ? '' : `/${path.slice(1).split('/').map(encodeURIComponent).join('/')}`
}
function serializeQuery(query: Record<string, string | string[]>): string {
  const parts: string[] = []
  for (const k of Object.keys(query)) for (const v of ([] as string[]).concat(query[k]!)) parts.push(`${encodeURIComponent(k)}=${encodeURIComponent(v)}`)
  return parts.length === 0 ? '' : `?${parts.join('&')}`
}
function sanitized(params: Record<string, unknown>, result: PolicyResult): Record<string, unknown> {
  if (result.obligations.length === 0) return params
  const out = { ...params }
  for (const o of result.obligations) {
    const key = o.path.replace(/^\/params\//, '')
    if (Object.hasOwn(out, key)) out[key] = '[REDACTED]'
  }
  return out
}
const permits = (r: PolicyResult): boolean => r.decision === 'allow' || r.decision === 'sanitize'

// ---- generators -------------------------------------------------------

/** `limit` spelt as JSON text in many ways, with the value it parses to. */
const limitText = fc.oneof(
  fc.integer({ min: -5, max: 200 }).map(String),
  fc.constantFrom('1e3', '1E2', '100.0', '1000.0', '5e1', '-0', '99.999999999999999999', '1e400', '0x10', '"10"', 'null', 'true', '[10]', '{"n":1}'),
)
const keyText = fc.constantFrom('"limit"', '"\\u006cimit"', '"lim\\u0069t"', '"LIMIT"', '"limit "')
const extraMember = fc.oneof(
  fc
    .record({
      k: fc.constantFrom('"secret"', '"note"', '"\\u0073ecret"', '"nested"', '"__proto__"'),
      v: fc.oneof(
        fc.string({ maxLength: 40 }).map((s) => JSON.stringify(s)),
        fc.constant('{"a":{"b":{"c":[1,2,{"d":"e"}]}}}'),
        fc.constant(JSON.stringify('x'.repeat(3000))),
      ),
    })
    .map(({ k, v }) => `${k}:${v}`),
)
/** A JSON object text with duplicate keys, escapes, odd number spellings and extra members. */
const bodyText = fc
  .tuple(fc.array(fc.tuple(keyText, limitText), { minLength: 0, maxLength: 3 }), fc.array(extraMember, { maxLength: 3 }), fc.boolean())
  .map(([limits, extras, spaced]) => {
    const members = [...limits.map(([k, v]) => `${k}:${v}`), ...extras]
    return spaced ? `{ ${members.join(' , ')} }` : `{${members.join(',')}}`
  })
/** A body the policy may well allow: `limit` within bounds in odd spellings, duplicates (the last wins), escapes, extra members. */
const permittedBody = fc
  .tuple(
    fc.oneof(fc.integer({ min: 0, max: 150 }).map(String), fc.constantFrom('1e1', '5E1', '100.0', '1e2', '1.5e1', '-0')),
    fc.array(extraMember, { maxLength: 2 }),
    fc.boolean(),
    fc.constantFrom('"limit"', '"\\u006cimit"', '"li\\u006dit"'),
  )
  .map(([limit, extras, duplicate, key]) => `{${[...(duplicate ? [`"limit":100000`] : []), `${key}:${limit}`, ...extras].join(',')}}`)
const anyBody = fc.oneof(
  { arbitrary: permittedBody, weight: 4 },
  { arbitrary: bodyText, weight: 2 },
  { arbitrary: fc.constantFrom('', '[]', '[{"limit":1}]', '{"limit":1', 'limit=5', '\ufeff{"limit":1}'), weight: 1 },
)
const contentType = fc.oneof(
  {
    arbitrary: fc.constantFrom(
      'application/json',
      'application/vnd.api+json',
      'application/json; charset=utf-8',
      'application/JSON',
      'application/merge-patch+json',
    ),
    weight: 4,
  },
  {
    arbitrary: fc.constantFrom<string | undefined>(undefined, 'text/plain', 'application/x-www-form-urlencoded', 'application/json; charset=utf-16'),
    weight: 1,
  },
)
const querySuffix = fc.oneof(
  { arbitrary: fc.constantFrom('', '?a=1+2&b=%41&a=3', '?x', '?&&', '?q=%F0%9F%98%80', '?tag=a&tag=b&tag=a'), weight: 3 },
  { arbitrary: fc.constantFrom('?limit=1000', '?limit=10&limit=1000', '?%6cimit=1000', '?a=%zz', '?limit'), weight: 1 },
)
const pathSuffix = fc.oneof(
  { arbitrary: fc.constantFrom('', '/', '/x', '/a%20b', '/%C3%BC', '/a;b=c', '/list/', '/%61bc'), weight: 3 },
  { arbitrary: fc.constantFrom('/%61dmin', '/admin', '/../admin', '/%2e%2e/admin', '//admin', '/a%2Fb', '/ü', '/%E0%A4%A'), weight: 1 },
)
const method = fc.oneof({ arbitrary: fc.constantFrom('POST', 'PUT', 'PATCH'), weight: 3 }, { arbitrary: fc.constantFrom('GET', 'DELETE'), weight: 1 })
/** Mostly absent, so that enough calls are allowed for the property to say something. */
const sometimes = <T>(...values: T[]) => fc.oneof({ arbitrary: fc.constant(undefined), weight: 4 }, { arbitrary: fc.constantFrom(...values), weight: 1 })
const steering = fc.record({
  'aegis-tool': sometimes('crm.list', 'crm.export'),
  'aegis-resource': sometimes('crm:/admin'),
  'x-http-method-override': sometimes('DELETE'),
  'content-encoding': sometimes('gzip', 'identity'),
})

function send(url: string, m: string, path: string, headers: Record<string, string | undefined>, body: string): Promise<{ status: number; text: string }> {
  const { hostname, port } = new URL(url)
  const clean: Record<string, string> = {}
  for (const [k, v] of Object.entries(headers)) if (v !== undefined) clean[k] = v
  return new Promise((resolve) => {
    // node:http sends the request-target exactly as written.
    const req = httpRequest({ hostname, port, path, method: m, headers: clean, agent: false }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }))
    })
    // The gateway may answer (and close) before a refused body is sent whole; Node's client then reports a parse error.
    // The property is about what reaches the upstream, so a client-side error counts as an answer.
    req.on('error', () => resolve({ status: 0, text: '' }))
    req.end(body === '' ? undefined : body)
  })
}

describe('enforcement integrity, property-based', () => {
  let env: GatewayEnv
  let gw: RunningGateway
  let token: string
  const evaluated: Evaluated[] = []
  let proxyUp: Awaited<ReturnType<typeof startRecorder>>
  let mcpUp: Awaited<ReturnType<typeof startRecorder>>

  before(async () => {
    env = await startGatewayEnv()
    proxyUp = await startRecorder(() => ({ status: 200, body: '{"ok":true}' }))
    mcpUp = await startRecorder((body) => {
      let id: unknown = null
      try {
        id = (JSON.parse(body.toString('utf8')) as { id?: unknown }).id ?? null
      } catch {
        /* answered anyway */
      }
      return id === null
        ? { status: 202, body: '' }
        : { status: 200, body: JSON.stringify({ jsonrpc: '2.0', id, result: { content: [{ type: 'text', text: 'ok' }] } }) }
    })
    const cred = await env.agent('property-bot', ['crm.list', 'crm.export'])
    await activatePolicy(env, POLICY)
    gw = await env.startGateway(
      {
        gateway: {
          routes: [
            { path: '/p', upstream: `${proxyUp.url}/up`, mode: 'proxy', tool: 'crm.list' },
            { path: '/m', upstream: `${mcpUp.url}/mcp`, mode: 'mcp' },
          ],
        },
      },
      { policyCompiler: recordingCompiler(evaluated) },
    )
    token = await env.token(cred)
    await eventually(async () => (await authorize(gw.url, token, { action: { tool: 'crm.list', params: { limit: 1 } } })).body.policy_version !== 'none')
  })
  after(async () => {
    proxyUp?.server.close()
    mcpUp?.server.close()
    await env?.close()
  })

  test('reverse proxy: the upstream gets exactly the decided request, and nothing refused', async (t) => {
    let cases = 0
    let forwarded = 0
    await fc.assert(
      fc.asyncProperty(method, pathSuffix, querySuffix, contentType, anyBody, steering, async (m, path, query, type, body, headers) => {
        cases++
        evaluated.length = 0
        const before = proxyUp.seen.length
        await send(gw.url, m, `/p${path}${query}`, { authorization: `Bearer ${token}`, 'content-type': type, ...headers }, body)
        const reached = proxyUp.seen.slice(before)
        assert.ok(evaluated.length <= 1, 'one evaluation per call')
        if (reached.length === 0) return
        forwarded++
        assert.equal(reached.length, 1)
        assert.equal(evaluated.length, 1, 'nothing reaches the upstream without a decision')
        const { request, result } = evaluated[0]!
        assert.ok(permits(result), `the policy refused (${result.decision}) but the upstream was reached`)
        const got = reached[0]!
        const http = request.http!
        assert.equal(got.method, http.method)
        assert.equal(got.url, `/up${serializePath(http.path)}${serializeQuery(http.query)}`)
        if (http.body === 'json') {
          assert.equal(got.body.toString('utf8'), JSON.stringify(sanitized(request.params, result)))
        } else {
          assert.equal(got.body.length, 0)
          assert.deepEqual(request.params, http.query)
        }
        assert.equal(request.resource, '/p')
        assert.equal(request.action, 'crm.list')
      }),
      { seed: SEED, numRuns: RUNS, endOnFailure: true },
    )
    t.diagnostic(`reverse proxy: ${cases} generated requests, ${forwarded} forwarded, seed ${SEED}`)
    console.log(`# property: reverse proxy ran ${cases} generated requests (${forwarded} forwarded), seed ${SEED}`)
    assert.ok(forwarded > 0, 'some generated requests must be allowed, or the property says nothing')
  })

  const toolName = fc.oneof(
    { arbitrary: fc.constantFrom('crm.list', 'crm.export'), weight: 4 },
    { arbitrary: fc.constantFrom('crm.list ', 'crm.delete'), weight: 1 },
  )
  const argsText = fc.oneof(
    { arbitrary: permittedBody, weight: 3 },
    { arbitrary: bodyText, weight: 1 },
    {
      arbitrary: fc.constantFrom(
        '{"format":"csv"}',
        '{"format":"xml","format":"csv"}',
        '{"form\\u0061t":"csv","secret":"s"}',
        '{"format":"csv","format":"xml"}',
        'null',
        '[]',
        '"x"',
      ),
      weight: 2,
    },
  )
  const idText = fc.oneof(
    { arbitrary: fc.constantFrom('1', '"a"', '7e0'), weight: 3 },
    { arbitrary: fc.constantFrom<string | null>(null, '1.5', 'null', '{}'), weight: 1 },
  )
  const mcpHeaders = fc.record({
    'mcp-method': sometimes('tools/call', 'tools/list'),
    'mcp-name': sometimes('crm.list', 'crm.export'),
    'aegis-resource': sometimes('crm:/admin'),
  })

  test('MCP: tools/call reaches the upstream only as decided, and notifications never carry a call', async (t) => {
    let cases = 0
    let forwarded = 0
    await fc.assert(
      fc.asyncProperty(toolName, argsText, idText, fc.constantFrom('tools/call', 'tools/call '), mcpHeaders, async (name, args, id, rpcMethod, headers) => {
        cases++
        evaluated.length = 0
        const before = mcpUp.seen.length
        const text =
          `{"jsonrpc":"2.0",${id === null ? '' : `"id":${id},`}"method":${JSON.stringify(rpcMethod)},` +
          `"params":{"name":${JSON.stringify(name)},"arguments":${args}}}`
        await send(
          gw.url,
          'POST',
          '/m',
          {
            authorization: `Bearer ${token}`,
            'content-type': 'application/json',
            accept: 'application/json, text/event-stream',
            'mcp-protocol-version': '2025-11-25',
            ...headers,
          },
          text,
        )
        const reached = mcpUp.seen.slice(before)
        if (reached.length === 0) return
        forwarded++
        assert.equal(reached.length, 1)
        const msg = JSON.parse(reached[0]!.body.toString('utf8')) as {
          id?: unknown
          method: string
          params: { name: string; arguments: Record<string, unknown> }
        }
        assert.ok('id' in msg && msg.id !== null, 'a call without an id (a notification) is never forwarded')
        assert.equal(msg.method, 'tools/call')
        assert.equal(evaluated.length, 1, 'nothing reaches the upstream without a decision')
        const { request, result } = evaluated[0]!
        assert.ok(permits(result), `the policy refused (${result.decision}) but the upstream was reached`)
        assert.equal(msg.params.name, request.action)
        // Byte for byte: the message as sent, re-serialized, with the decided (sanitized) arguments.
        const sent = JSON.parse(text) as { params: Record<string, unknown> }
        const expected = { ...sent, params: { ...sent.params, arguments: sanitized(request.params, result) } }
        assert.equal(reached[0]!.body.toString('utf8'), JSON.stringify(expected))
      }),
      { seed: SEED, numRuns: RUNS, endOnFailure: true },
    )
    t.diagnostic(`MCP: ${cases} generated messages, ${forwarded} forwarded, seed ${SEED}`)
    console.log(`# property: MCP ran ${cases} generated messages (${forwarded} forwarded), seed ${SEED}`)
    assert.ok(forwarded > 0, 'some generated calls must be allowed, or the property says nothing')
  })

  test('/v1/authorize: the answer is the decision on exactly the evaluated call', async (t) => {
    let cases = 0
    await fc.assert(
      fc.asyncProperty(toolName, argsText, fc.constantFrom<string | null>(null, '"crm:/x"', '123'), steering, async (tool, args, resource, headers) => {
        cases++
        evaluated.length = 0
        const text = `{"action":{"tool":${JSON.stringify(tool)},"params":${args}}${resource === null ? '' : `,"resource":${resource}`}}`
        const res = await send(
          gw.url,
          'POST',
          '/v1/authorize',
          { authorization: `Bearer ${token}`, 'content-type': 'application/json', ...headers, 'content-encoding': undefined },
          text,
        )
        if (res.status !== 200) {
          assert.equal(evaluated.length, 0, 'a refused request is not decided')
          return
        }
        const body = JSON.parse(res.text) as { decision: string; params: Record<string, unknown> }
        if (evaluated.length === 0) {
          // The strict capability check decided before any bundle (a tool outside the manifest).
          assert.equal(body.decision, 'deny')
          return
        }
        assert.equal(evaluated.length, 1)
        const { request, result } = evaluated[0]!
        assert.equal(body.decision, result.decision)
        const sent = JSON.parse(text) as { action: { tool: string; params: Record<string, unknown> }; resource?: string }
        assert.equal(request.action, sent.action.tool)
        assert.equal(request.resource, sent.resource ?? null)
        assert.equal(JSON.stringify(body.params), JSON.stringify(sanitized(request.params, result)))
      }),
      { seed: SEED, numRuns: RUNS, endOnFailure: true },
    )
    t.diagnostic(`/v1/authorize: ${cases} generated calls, seed ${SEED}`)
    console.log(`# property: /v1/authorize ran ${cases} generated calls, seed ${SEED}`)
  })
})
