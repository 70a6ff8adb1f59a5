/**
 * MCP mode end to end, everything real: the official SDK's Client and
 * StreamableHTTPClientTransport talk through a real gateway (buildGateway)
 * following a real control plane (buildControlPlane, SQLite) to the SDK's
 * McpServer behind StreamableHTTPServerTransport, once answering with SSE
 * streams and once with JSON. The Cedar bundle is uploaded and activated
 * through the admin API; approvals are decided through it too.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { eventually, startGatewayEnv, type Credential, type GatewayEnv, type RunningGateway } from '../../helpers/gateway-env.js'
import { MemoryDecisionSink } from '../../../src/gateway/index.js'
import { CONTACT, startMcpUpstream, UPSTREAM_TOOLS, type McpUpstream } from './upstream.js'

const CEDAR = `
@id("crm-read")
@sanitize("redact:/result/ssn, redact:/result/contacts/*/ssn")
permit (principal, action == Action::"crm.read", resource);

@id("crm-search")
permit (principal, action == Action::"crm.search", resource);

@id("crm-search-limit")
@reason("searches return at most 100 rows")
forbid (principal, action == Action::"crm.search", resource)
when { context.params has limit && context.params.limit > 100 };

@id("crm-export")
permit (principal, action == Action::"crm.export", resource)
when { context.params has format && context.params.format == "csv" };

@id("crm-delete")
permit (principal, action == Action::"crm.delete", resource);

@id("crm-delete-never")
@reason("contacts are never deleted by agents")
forbid (principal, action == Action::"crm.delete", resource);

@id("charge")
@sanitize("redact:/params/card_number")
permit (principal, action == Action::"payments.charge", resource);

@id("transfer")
permit (principal, action == Action::"payments.transfer", resource)
when { context.params has amount && context.params.amount <= 50000 };

@id("transfer-approval")
@approval("finance")
@reason("transfers above 1000 need a finance approver")
forbid (principal, action == Action::"payments.transfer", resource)
when { context.params has amount && context.params.amount > 1000 }
unless { context.override };

@id("progress")
permit (principal, action == Action::"slow.progress", resource);

@id("crm-admin")
permit (principal, action == Action::"crm.admin", resource);

@id("crm-admin-scope")
forbid (principal, action == Action::"crm.admin", resource)
unless { principal.scopes.contains("crm:admin") };

@id("crm-merge")
permit (principal, action == Action::"crm.merge", resource);

@id("crm-merge-small")
forbid (principal, action == Action::"crm.merge", resource)
when { context.params.count > 5 };

@id("refund")
permit (principal, action == Action::"payments.refund", resource);

@id("refund-approval")
@approval("finance")
forbid (principal, action == Action::"payments.refund", resource)
unless { context.override };
`

/**
 * The agent's capabilities: every upstream tool but files.delete. Hidden by
 * policy, whatever the parameters: crm.delete (unconditional forbid),
 * crm.purge (nothing permits it), crm.admin (forbidden for the agent's
 * scopes). Shown although a call with empty parameters is denied:
 * crm.export (its permit needs a parameter), crm.merge (its forbid reads a
 * parameter without `has`, so empty parameters fail evaluation and deny);
 * and payments.refund (needs approval, which can let it through).
 */
const CAPABILITIES = [
  'crm.read',
  'crm.search',
  'crm.export',
  'crm.delete',
  'crm.purge',
  'crm.admin',
  'crm.merge',
  'payments.charge',
  'payments.transfer',
  'payments.refund',
  'slow.progress',
]
const VISIBLE = ['crm.export', 'crm.merge', 'crm.read', 'crm.search', 'payments.charge', 'payments.refund', 'payments.transfer', 'slow.progress']

interface ToolResult {
  content: Array<{ type: string; text?: string }>
  structuredContent?: Record<string, unknown>
  isError?: boolean
  _meta?: Record<string, unknown>
}

async function connect(url: string, headers: Record<string, string>): Promise<{ client: Client; transport: StreamableHTTPClientTransport }> {
  const client = new Client({ name: 'aegis-test-agent', version: '1.0.0' })
  const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } })
  await client.connect(transport)
  return { client, transport }
}

for (const flavor of ['sse', 'json'] as const) {
  describe(`MCP mode through the gateway (upstream answers ${flavor === 'sse' ? 'with SSE streams' : 'with JSON'})`, () => {
    let env: GatewayEnv
    let gw: RunningGateway
    let upstream: McpUpstream
    let cred: Credential
    let token: string
    let client: Client
    const sink = new MemoryDecisionSink()
    const route = '/mcp/crm'

    before(async () => {
      upstream = await startMcpUpstream({ json: flavor === 'json' })
      env = await startGatewayEnv()
      cred = await env.agent('crm-bot', CAPABILITIES)
      gw = await env.startGateway({ gateway: { routes: [{ path: route, upstream: upstream.url, mode: 'mcp', scopes: ['crm:read'] }] } }, { decisions: sink })
      const uploaded = await env.admin('POST', `/tenants/${env.tenant}/policies`, { version: '2026-11-29.1', cedar: CEDAR })
      await env.admin('POST', `/tenants/${env.tenant}/policies/${String(uploaded.id)}/activate`)
      await eventually(async () => gw.gw.deps.state.policyFor(env.tenant)?.version === '2026-11-29.1')
      token = await env.token(cred)
      ;({ client } = await connect(gw.url + route, { authorization: `Bearer ${token}` }))
    })
    after(async () => {
      await client?.close().catch(() => {})
      await env?.close()
      await upstream?.close()
    })

    test('tools/list shows the capabilities minus the tools a policy forbids outright', async () => {
      const names = (await client.listTools()).tools.map((t) => t.name).sort()
      assert.deepEqual(names, VISIBLE)
      for (const hidden of ['files.delete', 'crm.delete', 'crm.purge', 'crm.admin']) assert.ok(UPSTREAM_TOOLS.includes(hidden) && !names.includes(hidden))
      // Listed tools keep what the server said about them.
      const read = (await client.listTools()).tools.find((t) => t.name === 'crm.read')!
      assert.equal(read.description, 'Read a contact')
    })

    test("an allowed call is forwarded as is, without the agent's token", async () => {
      const before = upstream.requests.length
      const r = (await client.callTool({ name: 'crm.search', arguments: { q: 'acme', limit: 10 } })) as ToolResult
      assert.notEqual(r.isError, true)
      assert.deepEqual(JSON.parse(r.content[0]!.text!), { tool: 'crm.search', args: { q: 'acme', limit: 10 } })
      const seen = upstream.requests.slice(before)
      assert.ok(seen.length > 0)
      for (const req of seen) {
        assert.equal(req.headers.authorization, undefined, 'the Aegis token never reaches the tool server')
        assert.equal(req.headers['x-aegis-agent'], 'crm-bot')
        assert.equal(typeof req.headers['mcp-session-id'], 'string', 'the session id is passed upstream')
      }
      const audit = sink.events.filter((e) => e.type === 'decision' && e.tool === 'crm.search').at(-1)!
      assert.equal(audit.mode, 'mcp')
      assert.equal(audit.decision, 'allow')
      assert.equal(audit.resource, route)
      assert.equal(audit.agent_id, 'crm-bot')
    })

    test('a denied call is a tool error the model sees, with the reason, and never reaches the server', async () => {
      const calls = upstream.calls.length
      const r = (await client.callTool({ name: 'crm.search', arguments: { q: 'acme', limit: 500 } })) as ToolResult
      assert.equal(r.isError, true)
      assert.match(r.content[0]!.text!, /denied/)
      assert.match(r.content[0]!.text!, /crm-search-limit \(searches return at most 100 rows\)/)
      const d = r._meta?.['aegis/decision'] as Record<string, unknown>
      assert.equal(d.decision, 'deny')
      assert.equal(d.policy_version, '2026-11-29.1')
      assert.equal(upstream.calls.length, calls)
      // A tool tools/list hid is refused the same way when called anyway.
      const hidden = (await client.callTool({ name: 'files.delete', arguments: {} })) as ToolResult
      assert.equal(hidden.isError, true)
      assert.match(hidden.content[0]!.text!, /capability:missing/)
      assert.equal(upstream.calls.length, calls)
      assert.equal(sink.events.filter((e) => e.type === 'decision' && e.tool === 'files.delete' && e.decision === 'deny' && e.mode === 'mcp').length, 1)
    })

    test('a tool denied only for some parameters stays listed and is callable with the others', async () => {
      const r = (await client.callTool({ name: 'crm.export', arguments: { format: 'csv' } })) as ToolResult
      assert.notEqual(r.isError, true)
      const no = (await client.callTool({ name: 'crm.export', arguments: { format: 'xml' } })) as ToolResult
      assert.equal(no.isError, true)
      assert.notEqual(((await client.callTool({ name: 'crm.merge', arguments: { count: 2 } })) as ToolResult).isError, true)
      assert.equal(((await client.callTool({ name: 'crm.merge', arguments: { count: 9 } })) as ToolResult).isError, true)
    })

    test('sanitize forwards the redacted arguments', async () => {
      const r = (await client.callTool({ name: 'payments.charge', arguments: { card_number: '4111111111111111', amount: 42 } })) as ToolResult
      assert.notEqual(r.isError, true)
      assert.deepEqual(upstream.calls.at(-1), { tool: 'payments.charge', args: { card_number: '[REDACTED]', amount: 42 } })
      assert.ok(!JSON.stringify(r).includes('4111111111111111'))
    })

    test('redact:/result/… obligations redact structuredContent and JSON text content', async () => {
      const r = (await client.callTool({ name: 'crm.read', arguments: { id: 'c1' } })) as ToolResult
      assert.notEqual(r.isError, true)
      const expected = {
        name: 'Ada',
        ssn: '[REDACTED]',
        contacts: [
          { name: 'Bob', ssn: '[REDACTED]' },
          { name: 'Eve', ssn: '[REDACTED]' },
        ],
      }
      assert.deepEqual(r.structuredContent, expected)
      assert.deepEqual(JSON.parse(r.content[0]!.text!), expected)
      for (const c of [CONTACT, ...CONTACT.contacts]) assert.ok(!JSON.stringify(r).includes(c.ssn))
      // The tool server itself answered with the real values.
      assert.equal(upstream.calls.at(-1)!.tool, 'crm.read')
    })

    test('approval_needed answers the approval id and status URL; the approved retry with Aegis-Override passes once', async () => {
      const args = { amount: 5000, to: 'ACME GmbH' }
      const calls = upstream.calls.length
      const r = (await client.callTool({ name: 'payments.transfer', arguments: args })) as ToolResult
      assert.equal(r.isError, true)
      const d = r._meta?.['aegis/decision'] as { decision: string; approval: { id: string; status_url: string } }
      assert.equal(d.decision, 'approval_needed')
      assert.match(d.approval.id, /\S/)
      assert.equal(d.approval.status_url, `${env.issuer}/v1/approvals/${d.approval.id}`)
      assert.ok(r.content[0]!.text!.includes(d.approval.id) && r.content[0]!.text!.includes(d.approval.status_url))
      assert.equal(upstream.calls.length, calls)

      await env.admin('POST', `/approvals/${d.approval.id}/approve`, { reason: 'invoice 4711' })
      const st = (await (await fetch(d.approval.status_url, { headers: { authorization: `Bearer ${token}` } })).json()) as {
        status: string
        override_token: string
      }
      assert.equal(st.status, 'approved')

      const retry = await connect(gw.url + route, { authorization: `Bearer ${token}`, 'aegis-override': st.override_token })
      try {
        const ok = (await retry.client.callTool({ name: 'payments.transfer', arguments: args })) as ToolResult
        assert.notEqual(ok.isError, true)
        assert.deepEqual(upstream.calls.at(-1), { tool: 'payments.transfer', args })
        assert.ok(
          upstream.requests.every((q) => q.headers['aegis-override'] === undefined),
          'the override token never reaches the tool server',
        )
        // Single use: the same override again is refused and the call never reaches the server.
        const n = upstream.calls.length
        await assert.rejects(retry.client.callTool({ name: 'payments.transfer', arguments: args }))
        assert.equal(upstream.calls.length, n)
      } finally {
        await retry.client.close().catch(() => {})
      }
    })

    test('the override token may come in params._meta["aegis/override"] instead, and never reaches the tool server', async () => {
      const args = { amount: 2500, to: 'Initech' }
      const r = (await client.callTool({ name: 'payments.transfer', arguments: args })) as ToolResult
      const d = r._meta?.['aegis/decision'] as { approval: { id: string; status_url: string } }
      await env.admin('POST', `/approvals/${d.approval.id}/approve`, {})
      const st = (await (await fetch(d.approval.status_url, { headers: { authorization: `Bearer ${token}` } })).json()) as { override_token: string }
      const ok = (await client.callTool({
        name: 'payments.transfer',
        arguments: args,
        _meta: { 'aegis/override': st.override_token, trace: 'kept' },
      })) as ToolResult
      assert.notEqual(ok.isError, true)
      const last = upstream.calls.at(-1)!
      assert.deepEqual(last.args, args)
      assert.equal(last.meta?.trace, 'kept')
      assert.equal(last.meta?.['aegis/override'], undefined)
      await assert.rejects(client.callTool({ name: 'payments.transfer', arguments: args, _meta: { 'aegis/override': st.override_token } }))
    })

    test('SSE progress notifications stream through while the tool runs', {
      skip: flavor === 'json' ? 'a JSON-mode server sends no progress stream' : false,
    }, async () => {
      const progress: number[] = []
      const result = client.callTool({ name: 'slow.progress', arguments: {} }, undefined, {
        onprogress: (p) => {
          progress.push(p.progress)
          // The tool finishes only after this: a buffering gateway would never deliver it.
          if (p.progress === 1) upstream.release()
        },
      }) as Promise<ToolResult>
      const r = await result
      assert.equal(r.content[0]!.text, 'done')
      assert.deepEqual(progress, [1, 2])
    })

    test('methods outside allow_methods are refused with JSON-RPC -32601; batches with -32600', async () => {
      // tasks/* is not among the default allow_methods: the gateway knows nothing to decide about it.
      const tasks = await fetch(gw.url + route, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tasks/list' }),
      })
      const refused = (await tasks.json()) as { error: { code: number; message: string } }
      assert.equal(refused.error.code, -32601)
      assert.match(refused.error.message, /not allowed through this gateway route/)
      const res = await fetch(gw.url + route, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
        body: JSON.stringify([
          { jsonrpc: '2.0', id: 1, method: 'ping' },
          { jsonrpc: '2.0', id: 2, method: 'ping' },
        ]),
      })
      assert.equal(res.status, 400)
      const body = (await res.json()) as { error: { code: number; message: string } }
      assert.equal(body.error.code, -32600)
      assert.match(body.error.message, /batches are not supported/)
    })

    test('a request without a token gets 401 with the resource_metadata pointer, and the metadata names the issuer', async () => {
      const res = await fetch(gw.url + route, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' }),
      })
      assert.equal(res.status, 401)
      const www = res.headers.get('www-authenticate') ?? ''
      const metadata = `${gw.url}/.well-known/oauth-protected-resource${route}`
      assert.ok(www.startsWith(`Bearer resource_metadata="${metadata}"`), www)
      assert.match(www, /error="invalid_token"/)
      assert.deepEqual(await res.json(), { error: 'invalid_token', error_description: 'a bearer token is required' })
      const m = (await (await fetch(metadata)).json()) as Record<string, unknown>
      assert.deepEqual(m, {
        resource: gw.url + route,
        authorization_servers: [env.issuer],
        bearer_methods_supported: ['header'],
        scopes_supported: ['crm:read'],
        resource_name: 'Aegis gateway',
      })
      const root = (await (await fetch(`${gw.url}/.well-known/oauth-protected-resource`)).json()) as Record<string, unknown>
      assert.equal(root.resource, gw.url)
      assert.deepEqual(root.authorization_servers, [env.issuer])
      // A bad token, and the SDK client without any token, are refused the same way.
      const bad = await fetch(gw.url + route, { method: 'GET', headers: { authorization: 'Bearer not-a-jwt', accept: 'text/event-stream' } })
      assert.equal(bad.status, 401)
      assert.match(bad.headers.get('www-authenticate') ?? '', /^Bearer resource_metadata="[^"]+", error="invalid_token"/)
      await bad.body?.cancel()
      const anon = new Client({ name: 'anon', version: '1.0.0' })
      await assert.rejects(anon.connect(new StreamableHTTPClientTransport(new URL(gw.url + route))))
      await anon.close().catch(() => {})
    })

    test('a revoked token is refused on every MCP request', async () => {
      const other = await env.agent('crm-bot-2', CAPABILITIES)
      const t2 = await env.token(other)
      const c2 = await connect(gw.url + route, { authorization: `Bearer ${t2}` })
      try {
        assert.equal((await c2.client.listTools()).tools.length, VISIBLE.length)
        await env.admin('POST', '/revocations', { type: 'agent', value: 'crm-bot-2', tenant: env.tenant, reason: 'test' })
        await eventually(async () => {
          const res = await fetch(gw.url + route, {
            method: 'POST',
            headers: { authorization: `Bearer ${t2}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
            body: JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'ping' }),
          })
          await res.body?.cancel()
          return res.status === 401
        })
        await assert.rejects(c2.client.listTools())
        assert.ok(sink.events.some((e) => e.type === 'token.refused' && e.mode === 'mcp' && e.agent_id === 'crm-bot-2'))
      } finally {
        await c2.client.close().catch(() => {})
      }
    })

    test('in shadow mode tools/list hides only what the manifest lacks, and refusals are not enforced', async () => {
      const shadow = await env.startGateway({ gateway: { shadow: true, routes: [{ path: route, upstream: upstream.url, mode: 'mcp' }] } }, { decisions: sink })
      const c = await connect(shadow.url + route, { authorization: `Bearer ${token}` })
      try {
        await eventually(async () => shadow.gw.deps.state.policyFor(env.tenant)?.version === '2026-11-29.1')
        assert.deepEqual((await c.client.listTools()).tools.map((t) => t.name).sort(), [...CAPABILITIES].sort())
        const r = (await c.client.callTool({ name: 'crm.delete', arguments: { id: 'c1' } })) as ToolResult
        assert.notEqual(r.isError, true)
        const audit = sink.events.filter((e) => e.type === 'decision' && e.tool === 'crm.delete').at(-1)!
        assert.equal(audit.decision, 'deny')
        assert.equal(audit.enforced, false)
      } finally {
        await c.client.close().catch(() => {})
        await shadow.close()
      }
    })

    test('ending the session passes DELETE upstream', async () => {
      const c3 = await connect(gw.url + route, { authorization: `Bearer ${token}` })
      const sid = c3.transport.sessionId
      assert.equal(typeof sid, 'string')
      // The SDK client opened the server-to-client GET stream through the gateway after initialize.
      await eventually(async () => upstream.requests.some((q) => q.method === 'GET' && q.headers['mcp-session-id'] === sid))
      await c3.transport.terminateSession()
      assert.ok(upstream.closedSessions.includes(sid!))
      await c3.client.close().catch(() => {})
    })
  })
}
