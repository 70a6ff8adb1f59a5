/**
 * Approvals inside the MCP conversation (issue 18, item 1), with real
 * processes: a control plane (in this process, real HTTP), two gateway
 * processes sharing Redis and `gateway.mcpStateSecret`, and real MCP
 * servers.
 *
 * - MCP 2025-11-25 with the official SDK's Client (declaring
 *   `elicitation.url`): tools/call → -32042 URLElicitationRequiredError
 *   naming the console page → approve through the admin API →
 *   notifications/elicitation/complete on the session's GET stream → the
 *   retry is allowed → a second retry asks again. The same across the two
 *   gateway processes (raw Streamable HTTP: each request to the process the
 *   test picks), as the workers of one gateway or gateways behind a load
 *   balancer see it. A client without the capability gets the tool error
 *   it always got.
 * - MCP 2026-07-28 (the SDK on npm does not speak it): requests built from
 *   the specification's schema (schema/2026-07-28/schema.ts), sent with
 *   fetch to a stateless tool server written for the test: InputRequiredResult
 *   → approve → retry with requestState allowed (at the other gateway) →
 *   replay refused → tampered state refused → a state for other arguments
 *   refused.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { createServer, type Server } from 'node:http'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { ElicitationCompleteNotificationSchema, UrlElicitationRequiredError } from '@modelcontextprotocol/sdk/types.js'
import { activatePolicy, authorize, eventually, startGatewayEnv, type Credential, type GatewayEnv } from '../../helpers/gateway-env.js'
import { startGatewayProcess, type GatewayProcess } from '../../helpers/gateway-processes.js'
import { REDIS_URL, skipWithoutRedis } from '../../helpers/services.js'
import { startMcpUpstream, type McpUpstream } from './upstream.js'

const CEDAR = `
@id("transfer")
permit (principal, action == Action::"payments.transfer", resource);

@id("transfer-approval")
@approval("finance")
@reason("transfers above 1000 need a finance approver")
forbid (principal, action == Action::"payments.transfer", resource)
when { context.params has amount && context.params.amount > 1000 }
unless { context.override };
`
const V2026 = '2026-07-28'
const ROUTE_2025 = '/mcp/pay'
const ROUTE_2026 = '/mcp/pay2026'

interface Rpc {
  id?: unknown
  result?: Record<string, any>
  error?: { code: number; message: string; data?: unknown }
}

/** A stateless MCP 2026-07-28 tool server: answers tools/call with a CallToolResult and records the params it received. */
async function startStatelessServer(): Promise<{ url: string; calls: Array<Record<string, unknown>>; close(): Promise<void> }> {
  const calls: Array<Record<string, unknown>> = []
  const server: Server = createServer((req, res) => {
    let body = ''
    req.on('data', (c: Buffer) => {
      body += c.toString()
    })
    req.on('end', () => {
      const msg = JSON.parse(body) as { id: unknown; method: string; params: Record<string, unknown> }
      if (msg.method !== 'tools/call') {
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', id: msg.id, error: { code: -32601, message: 'no' } }))
        return
      }
      calls.push(msg.params)
      const result = { resultType: 'complete', content: [{ type: 'text', text: `done: ${JSON.stringify(msg.params.arguments)}` }] }
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', id: msg.id, result }))
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}/mcp`,
    calls,
    close: async () => {
      server.closeAllConnections()
      await new Promise<void>((r) => server.close(() => r()))
    },
  }
}

describe('approvals inside the MCP conversation (two gateway processes, Redis)', { skip: await skipWithoutRedis() }, () => {
  let env: GatewayEnv
  let upstream: McpUpstream
  let stateless: Awaited<ReturnType<typeof startStatelessServer>>
  const gateways: GatewayProcess[] = []
  let cred: Credential
  let token: string

  before(async () => {
    upstream = await startMcpUpstream()
    stateless = await startStatelessServer()
    env = await startGatewayEnv({ redis: true })
    cred = await env.agent('pay-bot', ['payments.transfer'])
    await activatePolicy(env, CEDAR)
    const config = (i: number): Record<string, unknown> => ({
      issuer: env.issuer,
      gatewayToken: env.gatewayToken,
      redisUrl: REDIS_URL,
      logLevel: 'silent',
      gateway: {
        id: `mcp-gw-${i}-${env.tenant}`,
        mcpStateSecret: 'test-only state secret shared by both gateways',
        routes: [
          { path: ROUTE_2025, upstream: upstream.url, mode: 'mcp' },
          { path: ROUTE_2026, upstream: stateless.url, mode: 'mcp' },
        ],
      },
    })
    for (let i = 1; i <= 2; i++) gateways.push(await startGatewayProcess(config(i), env.tuning()))
    token = await env.token(cred)
    for (const g of gateways) {
      await eventually(
        async () => (await authorize(g.url, token, { action: { tool: 'payments.transfer', params: { amount: 10 } } })).body.decision === 'allow',
        15_000,
        50,
      )
    }
  })

  after(async () => {
    await Promise.all(gateways.map((g) => g.stop()))
    await env?.close()
    await upstream?.close()
    await stateless?.close()
  })

  describe('MCP 2025-11-25, the official SDK client', () => {
    test('-32042 names the console page; decided: elicitation/complete; the retry (any session of the agent) passes once, then asks again', async () => {
      const completed: string[] = []
      const client = new Client({ name: 'elicit-test', version: '1.0.0' }, { capabilities: { elicitation: { url: {} } } })
      client.setNotificationHandler(ElicitationCompleteNotificationSchema, (n) => {
        completed.push(n.params.elicitationId)
      })
      const gets = upstream.requests.filter((r) => r.method === 'GET').length
      await client.connect(
        new StreamableHTTPClientTransport(new URL(gateways[0]!.url + ROUTE_2025), { requestInit: { headers: { authorization: `Bearer ${token}` } } }),
      )
      try {
        // The client opens its GET stream after initialization; the notification travels on it.
        await eventually(async () => upstream.requests.filter((r) => r.method === 'GET').length > gets, 10_000, 10)
        const args = { amount: 5000, to: 'DE89 3704 0044 0532 0130 00' }
        const before = upstream.calls.length

        const first = await client.callTool({ name: 'payments.transfer', arguments: args }).then(
          () => assert.fail('an approval_needed call must not succeed'),
          (err: unknown) => err,
        )
        assert.ok(first instanceof UrlElicitationRequiredError, `expected UrlElicitationRequiredError, got ${String(first)}`)
        assert.equal(first.code, -32042)
        assert.equal(first.elicitations.length, 1)
        const e = first.elicitations[0]!
        assert.equal(e.mode, 'url')
        assert.match(e.elicitationId, /^apr_/)
        assert.equal(e.url, `${env.issuer}/console/approvals/${e.elicitationId}`)
        assert.match(e.message, /payments\.transfer needs a human approval/)
        assert.match(e.message, /transfers above 1000 need a finance approver/)
        assert.equal(upstream.calls.length, before, 'nothing reaches the tool server before approval')

        // Asking again before anyone decided: the same elicitation, still nothing forwarded.
        const again = await client.callTool({ name: 'payments.transfer', arguments: args }).catch((err: unknown) => err)
        assert.ok(again instanceof UrlElicitationRequiredError)
        assert.equal(again.elicitations[0]!.elicitationId, e.elicitationId)
        assert.equal(completed.length, 0)

        await env.admin('POST', `/approvals/${e.elicitationId}/approve`, { reason: 'invoice 4711 checked' })
        await eventually(async () => completed.includes(e.elicitationId), 15_000, 10)

        // The same call from the same agent: here from a new session of its (an agent restarted after the approval, say).
        const other = new Client({ name: 'elicit-test-2', version: '1.0.0' })
        await other.connect(
          new StreamableHTTPClientTransport(new URL(gateways[0]!.url + ROUTE_2025), { requestInit: { headers: { authorization: `Bearer ${token}` } } }),
        )
        const retry = (await other.callTool({ name: 'payments.transfer', arguments: args }).finally(() => other.close())) as {
          isError?: boolean
          content: Array<{ text?: string }>
        }
        assert.notEqual(retry.isError, true, JSON.stringify(retry))
        assert.equal(upstream.calls.length, before + 1)
        assert.deepEqual(upstream.calls.at(-1), { tool: 'payments.transfer', args })

        const second = await client.callTool({ name: 'payments.transfer', arguments: args }).catch((err: unknown) => err)
        assert.ok(second instanceof UrlElicitationRequiredError, 'a second retry is not allowed by the same approval')
        assert.notEqual(second.elicitations[0]!.elicitationId, e.elicitationId, 'it opens a new approval request')
        assert.equal(upstream.calls.length, before + 1)
      } finally {
        await client.close()
      }
    })

    test('across gateway processes: initialize on one, -32042 and the retry on others, the completion on the stream of another', async () => {
      const [a, b] = [gateways[0]!, gateways[1]!]
      let sid = ''
      /** One JSON-RPC message to a gateway; the answer, JSON or the one SSE event carrying it. */
      const rpc = async (gw: GatewayProcess, body: Record<string, unknown>): Promise<{ status: number; msg: Rpc | null; sid: string | null }> => {
        const res = await fetch(gw.url + ROUTE_2025, {
          method: 'POST',
          headers: {
            authorization: `Bearer ${token}`,
            'content-type': 'application/json',
            accept: 'application/json, text/event-stream',
            'mcp-protocol-version': '2025-11-25',
            ...(sid ? { 'mcp-session-id': sid } : {}),
          },
          body: JSON.stringify({ jsonrpc: '2.0', ...body }),
        })
        const text = await res.text()
        const data = text.startsWith('{') ? text : (/^data: (.*)$/m.exec(text)?.[1] ?? '')
        return { status: res.status, msg: data ? (JSON.parse(data) as Rpc) : null, sid: res.headers.get('mcp-session-id') }
      }
      const init = await rpc(a, {
        id: 1,
        method: 'initialize',
        params: { protocolVersion: '2025-11-25', capabilities: { elicitation: { url: {} } }, clientInfo: { name: 'raw', version: '1.0.0' } },
      })
      sid = init.sid ?? ''
      assert.ok(sid, 'the upstream opened a session')
      assert.equal((await rpc(a, { method: 'notifications/initialized' })).status, 202)
      // The session's GET stream, on the first gateway (its headers come with its first event).
      const gets = upstream.requests.filter((r) => r.method === 'GET').length
      let events = ''
      const ac = new AbortController()
      const reading = (async () => {
        const stream = await fetch(a.url + ROUTE_2025, {
          headers: { authorization: `Bearer ${token}`, accept: 'text/event-stream', 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25' },
          signal: ac.signal,
        })
        assert.equal(stream.status, 200)
        for await (const chunk of stream.body!) events += Buffer.from(chunk).toString('utf8')
      })().catch(() => {})
      await eventually(async () => upstream.requests.filter((r) => r.method === 'GET').length > gets, 10_000, 10)
      try {
        const args = { amount: 7000, to: 'AT61 1904 3002 3457 3201' }
        const before = upstream.calls.length
        const call = { method: 'tools/call', params: { name: 'payments.transfer', arguments: args } }
        // The other gateway knows the session's capability (published by the first).
        const first = await rpc(b, { id: 2, ...call })
        assert.equal(first.msg?.error?.code, -32042, JSON.stringify(first.msg))
        const id = (first.msg!.error!.data as { elicitations: Array<{ elicitationId: string }> }).elicitations[0]!.elicitationId

        await env.admin('POST', `/approvals/${id}/approve`, {})
        // Watched by the second gateway, sent on the first one's stream.
        await eventually(async () => events.includes('notifications/elicitation/complete') && events.includes(id), 15_000, 10)
        const note = JSON.parse(/^data: (.*notifications\/elicitation\/complete.*)$/m.exec(events)![1]!) as Record<string, unknown>
        assert.deepEqual(note, { jsonrpc: '2.0', method: 'notifications/elicitation/complete', params: { elicitationId: id } })

        const retry = await rpc(a, { id: 3, ...call })
        assert.equal(retry.msg?.error, undefined, JSON.stringify(retry.msg))
        assert.notEqual(retry.msg?.result?.isError, true)
        assert.equal(upstream.calls.length, before + 1)

        // Refused on the other gateway too. Its approval opener remembers the request it opened for this very call for a
        // moment (cachingApprovalOpener), so it may name the spent one before a new request is opened: never the call itself.
        await eventually(
          async () => {
            const second = await rpc(b, { id: 4, ...call })
            assert.equal(second.msg?.error?.code, -32042, JSON.stringify(second.msg))
            assert.equal(upstream.calls.length, before + 1)
            return (second.msg!.error!.data as { elicitations: Array<{ elicitationId: string }> }).elicitations[0]!.elicitationId !== id
          },
          15_000,
          250,
        )
      } finally {
        ac.abort()
        await reading
      }
    })

    test('a client without the elicitation.url capability gets the tool error naming the approval and its status URL', async () => {
      const client = new Client({ name: 'plain-test', version: '1.0.0' })
      await client.connect(
        new StreamableHTTPClientTransport(new URL(gateways[1]!.url + ROUTE_2025), { requestInit: { headers: { authorization: `Bearer ${token}` } } }),
      )
      try {
        const r = (await client.callTool({ name: 'payments.transfer', arguments: { amount: 2500, to: 'FR76' } })) as {
          isError?: boolean
          content: Array<{ text?: string }>
          _meta?: Record<string, any>
        }
        assert.equal(r.isError, true)
        const d = r._meta?.['aegis/decision'] as { decision: string; approval: { id: string; status_url: string } }
        assert.equal(d.decision, 'approval_needed')
        assert.equal(d.approval.status_url, `${env.issuer}/v1/approvals/${d.approval.id}`)
        assert.ok(r.content[0]!.text!.includes(d.approval.status_url))
      } finally {
        await client.close()
      }
    })
  })

  describe('MCP 2026-07-28, requests built from the specification schema', () => {
    const meta = (capabilities: Record<string, unknown>) => ({
      'io.modelcontextprotocol/protocolVersion': V2026,
      'io.modelcontextprotocol/clientInfo': { name: 'schema-client', version: '1.0.0' },
      'io.modelcontextprotocol/clientCapabilities': capabilities,
    })
    let nextId = 1
    /** One tools/call (stateless: no session, `_meta` and the standard headers on every request). */
    async function call(
      gw: GatewayProcess,
      args: Record<string, unknown>,
      extra: Record<string, unknown> = {},
      capabilities: Record<string, unknown> = { elicitation: { url: {} } },
    ): Promise<Rpc> {
      const res = await fetch(gw.url + ROUTE_2026, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${token}`,
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
          'mcp-protocol-version': V2026,
          'mcp-method': 'tools/call',
          'mcp-name': 'payments.transfer',
        },
        body: JSON.stringify({
          jsonrpc: '2.0',
          id: nextId++,
          method: 'tools/call',
          params: { name: 'payments.transfer', arguments: args, ...extra, _meta: meta(capabilities) },
        }),
      })
      assert.equal(res.status, 200)
      return (await res.json()) as Rpc
    }

    test('InputRequiredResult → approve → the retry with requestState passes once; replayed, tampered and foreign states are refused', async () => {
      const args = { amount: 9000, to: 'NL91 ABNA 0417 1643 00' }
      const first = await call(gateways[0]!, args)
      const r = first.result!
      assert.equal(r.resultType, 'input_required')
      assert.deepEqual(Object.keys(r.inputRequests), ['aegis/approval'])
      const input = r.inputRequests['aegis/approval'] as { method: string; params: { mode: string; message: string; url: string } }
      assert.equal(input.method, 'elicitation/create')
      assert.equal(input.params.mode, 'url')
      const approvalId = /\/console\/approvals\/(apr_[A-Za-z0-9_-]+)$/.exec(input.params.url)?.[1]
      assert.ok(approvalId, input.params.url)
      assert.equal(typeof r.requestState, 'string')
      const state = r.requestState as string
      assert.equal(stateless.calls.length, 0)

      // Retried before the decision: input is still required, nothing forwarded.
      const early = await call(gateways[1]!, args, { requestState: state, inputResponses: { 'aegis/approval': { action: 'accept' } } })
      assert.equal(early.result?.resultType, 'input_required')
      assert.equal(stateless.calls.length, 0)

      await env.admin('POST', `/approvals/${approvalId}/approve`, { reason: 'ok' })

      // The retry reaches the other gateway: the state is sealed with the shared secret.
      const retry = await call(gateways[1]!, args, { requestState: state, inputResponses: { 'aegis/approval': { action: 'accept' } } })
      assert.equal(retry.error, undefined, JSON.stringify(retry.error))
      assert.equal(retry.result?.resultType, 'complete')
      assert.notEqual(retry.result?.isError, true)
      assert.equal(stateless.calls.length, 1)
      assert.deepEqual(stateless.calls[0]!.arguments, args)
      assert.equal('requestState' in stateless.calls[0]!, false, "the gateway's state never reaches the tool server")
      assert.equal('inputResponses' in stateless.calls[0]!, false)

      const replay = await call(gateways[0]!, args, { requestState: state })
      assert.equal(replay.error?.code, -32602)
      assert.match(replay.error!.message, /already used/)

      const tampered = state.slice(0, -6) + (state.at(-6) === 'A' ? 'B' : 'A') + state.slice(-5)
      const bad = await call(gateways[0]!, args, { requestState: tampered })
      assert.equal(bad.error?.code, -32602)
      assert.match(bad.error!.message, /not a state this gateway issued, or it was altered/)
      assert.equal(stateless.calls.length, 1)
    })

    test('a state issued for other arguments is refused, even once its approval was granted', async () => {
      const args = { amount: 6000, to: 'IT60 X054 2811 1010 0000 0123 456' }
      const first = await call(gateways[0]!, args)
      const state = first.result!.requestState as string
      const url = (first.result!.inputRequests['aegis/approval'] as { params: { url: string } }).params.url
      await env.admin('POST', `/approvals/${url.split('/').pop()}/approve`, {})
      const other = await call(gateways[0]!, { ...args, amount: 60_000 }, { requestState: state })
      assert.equal(other.error?.code, -32602)
      assert.match(other.error!.message, /issued for a different call/)
      assert.equal(stateless.calls.length, 1)
    })

    test('a retry after a human denied the request is told so, and nothing is forwarded', async () => {
      const args = { amount: 4000, to: 'BE68 5390 0754 7034' }
      const first = await call(gateways[1]!, args)
      const url = (first.result!.inputRequests['aegis/approval'] as { params: { url: string } }).params.url
      await env.admin('POST', `/approvals/${url.split('/').pop()}/deny`, { reason: 'not this quarter' })
      const retry = await call(gateways[0]!, args, { requestState: first.result!.requestState })
      assert.equal(retry.result?.resultType, 'complete')
      assert.equal(retry.result?.isError, true)
      assert.match((retry.result!.content as Array<{ text: string }>)[0]!.text, /denied approval apr_\S+ for this call: not this quarter/)
      assert.equal(stateless.calls.length, 1)
    })

    test('without the elicitation.url capability in the request: the tool error, as a 2026-07-28 result', async () => {
      const r = await call(gateways[1]!, { amount: 3000, to: 'ES91' }, {}, {})
      assert.equal(r.result?.resultType, 'complete')
      assert.equal(r.result?.isError, true)
      const decision = r.result?._meta?.['aegis/decision'] as { decision: string } | undefined
      assert.equal(decision?.decision, 'approval_needed')
    })
  })
})
