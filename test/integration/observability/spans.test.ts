import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http'
import { InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base'
import { initTracing, shutdownTracing } from '../../../src/observability/tracing.js'
import { activatePolicy, authorize, eventually, startGatewayEnv, TEST_POLICY, type GatewayEnv, type RunningGateway } from '../../helpers/gateway-env.js'

const exporter = new InMemorySpanExporter()
initTracing({ processors: [new SimpleSpanProcessor(exporter)], env: {} })

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736'
const PARENT_ID = '00f067aa0ba902b7'
const TRACEPARENT = `00-${TRACE_ID}-${PARENT_ID}-01`
const SECRET_PARAM = 'card-4111111111111111-secret'

function spans(name: string): ReadableSpan[] {
  return exporter.getFinishedSpans().filter((s) => s.name === name)
}

function parentIdOf(s: ReadableSpan): string | undefined {
  // sdk-trace-base 2.x: parentSpanContext; 1.x: parentSpanId.
  const x = s as unknown as { parentSpanContext?: { spanId: string }; parentSpanId?: string }
  return x.parentSpanContext?.spanId ?? x.parentSpanId
}

/** No attribute value of any exported span contains `needle`. */
function assertNowhere(needle: string): void {
  for (const s of exporter.getFinishedSpans()) {
    const text = JSON.stringify({ name: s.name, attributes: s.attributes, events: s.events, status: s.status })
    assert.ok(!text.includes(needle), `span ${s.name} carries a secret value`)
  }
}

describe('OpenTelemetry spans', () => {
  let env: GatewayEnv
  let gw: RunningGateway
  let upstream: Server
  let upstreamHeaders: IncomingHttpHeaders | undefined
  let token: string

  before(async () => {
    upstream = createServer((req, res) => {
      upstreamHeaders = req.headers
      req.resume()
      req.on('end', () => {
        res.setHeader('content-type', 'application/json')
        res.end('{"ok":true}')
      })
    })
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r))
    const upPort = (upstream.address() as { port: number }).port
    env = await startGatewayEnv()
    await activatePolicy(env, TEST_POLICY)
    gw = await env.startGateway({ gateway: { routes: [{ path: '/crm', upstream: `http://127.0.0.1:${upPort}/api`, mode: 'proxy', tool: 'crm.read' }] } })
    const cred = await env.agent('span-bot', ['crm.read', 'payments.charge'])
    const res = await fetch(`${env.issuer}/oauth2/token`, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        traceparent: TRACEPARENT,
        authorization: `Basic ${Buffer.from(`${cred.client_id}:${cred.client_secret}`).toString('base64')}`,
      },
      body: 'grant_type=client_credentials',
    })
    assert.equal(res.status, 200)
    token = ((await res.json()) as { access_token: string }).access_token
    // The bundle reaches the gateway over the feed: wait until it decides with it.
    await eventually(async () => (await authorize(gw.url, token, { action: { tool: 'crm.read', params: {} } })).body.decision === 'allow', 10_000, 50)
  })

  after(async () => {
    await env?.close()
    await new Promise<void>((r) => upstream?.close(() => r()))
    await shutdownTracing()
  })

  test('token issuance is an aegis.token.issue span continuing the caller trace, without the token', () => {
    const [s] = spans('aegis.token.issue')
    assert.ok(s, 'no aegis.token.issue span')
    assert.equal(s.spanContext().traceId, TRACE_ID)
    assert.equal(parentIdOf(s), PARENT_ID)
    assert.equal(s.attributes['aegis.tenant'], env.tenant)
    assert.equal(s.attributes['aegis.agent'], 'span-bot')
    assert.equal(s.attributes['aegis.grant'], 'client_credentials')
    assert.equal(typeof s.attributes['aegis.token.lifetime_seconds'], 'number')
    assert.equal(typeof s.attributes['aegis.policy_version'], 'string')
    assert.equal(typeof s.attributes['aegis.latency_ms'], 'number')
    assertNowhere(token)
    assertNowhere(token.split('.')[2]!)
  })

  test(
    'a gateway decision is an aegis.decision span with agent, tenant, tool, decision, policy ids and version, latency; no token or parameter ' + 'value',
    async () => {
      const r = await authorize(
        gw.url,
        token,
        { action: { tool: 'payments.charge', params: { card_number: SECRET_PARAM, amount: 10 } } },
        { traceparent: TRACEPARENT },
      )
      assert.equal(r.status, 200)
      await eventually(async () => spans('aegis.decision').length > 0)
      const s = spans('aegis.decision').find((x) => x.attributes['aegis.tool'] === 'payments.charge')
      assert.ok(s, 'no decision span for payments.charge')
      assert.equal(s.spanContext().traceId, TRACE_ID)
      assert.equal(parentIdOf(s), PARENT_ID)
      assert.equal(s.attributes['aegis.tenant'], env.tenant)
      assert.equal(s.attributes['aegis.agent'], 'span-bot')
      assert.equal(s.attributes['aegis.decision'], 'sanitize')
      assert.equal(s.attributes['aegis.enforced'], true)
      assert.deepEqual(s.attributes['aegis.policy_ids'], ['charge'])
      assert.equal(typeof s.attributes['aegis.policy_version'], 'string')
      assert.equal(typeof s.attributes['aegis.latency_ms'], 'number')
      assertNowhere(SECRET_PARAM)
      assertNowhere(token)
    },
  )

  test('a refused token is an aegis.decision span with decision refused and error status', async () => {
    const r = await authorize(gw.url, 'not-a-token', { action: { tool: 'crm.read', params: {} } })
    assert.equal(r.status, 401)
    await eventually(async () => spans('aegis.decision').some((x) => x.attributes['aegis.decision'] === 'refused'))
    const s = spans('aegis.decision').find((x) => x.attributes['aegis.decision'] === 'refused')!
    assert.equal(s.status.code, 2)
    assertNowhere('not-a-token')
  })

  test('the reverse proxy passes the trace on, with the decision span as the upstream parent', async () => {
    exporter.reset()
    const res = await fetch(`${gw.url}/crm/contacts?id=7`, { headers: { authorization: `Bearer ${token}`, traceparent: TRACEPARENT } })
    assert.equal(res.status, 200)
    const tp = upstreamHeaders?.traceparent
    assert.equal(typeof tp, 'string')
    const [, traceId, parentId] = (tp as string).split('-')
    assert.equal(traceId, TRACE_ID)
    const decision = spans('aegis.decision').find((x) => x.attributes['aegis.mode'] === 'proxy')
    assert.ok(decision, 'no proxy decision span')
    assert.equal(parentId, decision.spanContext().spanId)
    assert.equal(upstreamHeaders?.authorization, undefined)
  })
})
