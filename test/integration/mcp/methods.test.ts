/**
 * Resources, prompts and the other MCP methods through the gateway, decided
 * by policy (docs/mcp.md "Resources, prompts and the other methods"): the
 * official SDK client talks through a real gateway (buildGateway, following
 * a real control plane) to the conformance reference server. `resources/read`
 * is decided as `resource:<scheme>` on the URI, `prompts/get` as
 * `prompt:<name>` with its arguments, with every decision (allow, deny,
 * approval_needed then the approved retry, sanitize on arguments and on the
 * result); the listings are filtered; `initialize` advertises what the route
 * lets through.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { McpError } from '@modelcontextprotocol/sdk/types.js'
import { MemoryDecisionSink } from '../../../src/gateway/index.js'
import { activatePolicy, eventually, startGatewayEnv, type GatewayEnv, type RunningGateway } from '../../helpers/gateway-env.js'
import { startConformanceServer, type ConformanceServer } from './conformance-server.js'

const CEDAR = `
@id("resources")
permit (principal, action == Action::"resource:test", resource)
unless { context.params.uri like "test://template/*" };

@id("template-redacted")
@sanitize("redact:/result/data")
permit (principal, action == Action::"resource:test", resource)
when { context.params.uri like "test://template/*" };

@id("uri-redacted")
@sanitize("redact:/params/uri")
permit (principal, action == Action::"resource:test", resource == Resource::"test://template/secret/data");

@id("no-binary")
@reason("binary resources are not for agents")
forbid (principal, action == Action::"resource:test", resource == Resource::"test://static-binary");

@id("watched-approval")
@approval("ops")
@reason("the watched resource needs an operator")
forbid (principal, action == Action::"resource:test", resource == Resource::"test://watched-resource")
unless { context.override };

@id("prompts")
permit (principal, action in [Action::"prompt:test_simple_prompt", Action::"prompt:test_prompt_with_image"], resource);

@id("prompt-args")
@sanitize("redact:/params/arg2")
permit (principal, action == Action::"prompt:test_prompt_with_arguments", resource);

@id("prompt-embedded")
permit (principal, action == Action::"prompt:test_prompt_with_embedded_resource", resource);

@id("prompt-embedded-files")
@reason("no local files in prompts")
forbid (principal, action == Action::"prompt:test_prompt_with_embedded_resource", resource)
when { context.params has resourceUri && context.params.resourceUri like "file:*" };

@id("prompt-embedded-watched")
@approval("ops")
forbid (principal, action == Action::"prompt:test_prompt_with_embedded_resource", resource)
when { context.params has resourceUri && context.params.resourceUri == "test://watched-resource" }
unless { context.override };

@id("tools")
permit (principal, action == Action::"test_simple_text", resource);
`

/** No prompt:test_prompt_with_image: it is hidden from prompts/list and refused, whatever the policy says. */
const CAPABILITIES = [
  'test_simple_text',
  'resource:test',
  'prompt:test_simple_prompt',
  'prompt:test_prompt_with_arguments',
  'prompt:test_prompt_with_embedded_resource',
]

const ROUTE = '/mcp/ref'
const TOOLS_ONLY = '/mcp/tools-only'

interface Refusal {
  code: number
  message: string
  data: { 'aegis/decision': { decision: string; reasons: string[]; approval?: { id: string; status_url: string } } }
}

async function refusalOf(p: Promise<unknown>): Promise<Refusal> {
  try {
    await p
  } catch (err) {
    assert.ok(err instanceof McpError, String(err))
    return { code: err.code, message: err.message, data: err.data as Refusal['data'] }
  }
  assert.fail('the request was not refused')
}

describe('MCP resources, prompts, completion and initialize through the gateway', () => {
  let upstream: ConformanceServer
  let env: GatewayEnv
  let gw: RunningGateway
  let token: string
  let client: Client
  const sink = new MemoryDecisionSink()

  async function connect(path: string, headers: Record<string, string> = {}): Promise<Client> {
    const c = new Client({ name: 'aegis-methods-test', version: '1.0.0' })
    await c.connect(new StreamableHTTPClientTransport(new URL(gw.url + path), { requestInit: { headers: { authorization: `Bearer ${token}`, ...headers } } }))
    return c
  }

  before(async () => {
    upstream = await startConformanceServer()
    env = await startGatewayEnv()
    const cred = await env.agent('ref-bot', CAPABILITIES)
    gw = await env.startGateway(
      {
        gateway: {
          routes: [
            { path: ROUTE, upstream: upstream.url, mode: 'mcp' },
            { path: TOOLS_ONLY, upstream: upstream.url, mode: 'mcp', allow_methods: ['initialize', 'ping', 'notifications/*', 'tools/list', 'tools/call'] },
          ],
        },
      },
      { decisions: sink },
    )
    const version = await activatePolicy(env, CEDAR)
    await eventually(async () => gw.gw.deps.state.policyFor(env.tenant)?.version === version)
    token = await env.token(cred)
    client = await connect(ROUTE)
  })
  after(async () => {
    await client?.close().catch(() => {})
    await env?.close()
    await upstream?.close()
  })

  test('initialize advertises what the route lets through: everything by default, only tools on a tools-only route', async () => {
    const all = client.getServerCapabilities()!
    assert.deepEqual(Object.keys(all).sort(), ['completions', 'logging', 'prompts', 'resources', 'tools'])
    assert.equal(all.resources?.subscribe, true)
    const toolsOnly = await connect(TOOLS_ONLY)
    try {
      assert.deepEqual(Object.keys(toolsOnly.getServerCapabilities()!), ['tools'])
      const refused = await refusalOf(toolsOnly.readResource({ uri: 'test://static-text' }))
      assert.equal(refused.code, -32601)
      assert.equal((await toolsOnly.callTool({ name: 'test_simple_text', arguments: {} })).isError, undefined)
    } finally {
      await toolsOnly.close()
    }
  })

  test('resources/list hides what a policy forbids outright; templates show when their scheme is a capability', async () => {
    const uris = (await client.listResources()).resources.map((r) => r.uri).sort()
    assert.deepEqual(uris, ['test://static-text', 'test://watched-resource'])
    const templates = (await client.listResourceTemplates()).resourceTemplates.map((t) => t.uriTemplate)
    assert.deepEqual(templates, ['test://template/{id}/data'])
  })

  test('resources/read is decided on the URI: allowed, denied (never forwarded), redacted', async () => {
    const text = await client.readResource({ uri: 'test://static-text' })
    assert.equal((text.contents[0] as { text: string }).text, 'This is the content of the static text resource.')
    const allowed = sink.events.filter((e) => e.type === 'decision' && e.tool === 'resource:test').at(-1)!
    assert.equal(allowed.resource, 'test://static-text')
    assert.equal(allowed.decision, 'allow')
    assert.equal(allowed.mode, 'mcp')

    const denied = await refusalOf(client.readResource({ uri: 'test://static-binary' }))
    assert.equal(denied.code, -32001)
    assert.equal(denied.data['aegis/decision'].decision, 'deny')
    assert.match(denied.data['aegis/decision'].reasons.join(' '), /no-binary \(binary resources are not for agents\)/)

    const redacted = await client.readResource({ uri: 'test://template/42/data' })
    assert.deepEqual(JSON.parse((redacted.contents[0] as { text: string }).text), { id: '42', templateTest: true, data: '[REDACTED]' })
    assert.equal(sink.events.filter((e) => e.type === 'decision' && e.resource === 'test://template/42/data').at(-1)!.decision, 'sanitize')

    // An obligation that would rewrite the URI would forward a read of another resource than the one decided.
    const rewritten = await refusalOf(client.readResource({ uri: 'test://template/secret/data' }))
    assert.equal(rewritten.code, -32001)
    assert.match(rewritten.message, /would rewrite the resource URI/)
  })

  test('resources/read that needs approval: the approved retry with the override passes once, for that URI only', async () => {
    const first = await refusalOf(client.readResource({ uri: 'test://watched-resource' }))
    assert.equal(first.code, -32001)
    const d = first.data['aegis/decision']
    assert.equal(d.decision, 'approval_needed')
    assert.ok(d.approval !== undefined)
    await env.admin('POST', `/approvals/${d.approval.id}/approve`, {})
    const st = (await (await fetch(d.approval.status_url, { headers: { authorization: `Bearer ${token}` } })).json()) as { override_token: string }
    const read = await client.readResource({ uri: 'test://watched-resource', _meta: { 'aegis/override': st.override_token } })
    assert.equal((read.contents[0] as { text: string }).text, 'Watched resource content')
    await assert.rejects(client.readResource({ uri: 'test://watched-resource', _meta: { 'aegis/override': st.override_token } }))
  })

  test('resources/subscribe is decided as a read of the URI', async () => {
    await client.subscribeResource({ uri: 'test://static-text' })
    const refused = await refusalOf(client.subscribeResource({ uri: 'test://static-binary' }))
    assert.equal(refused.data['aegis/decision'].decision, 'deny')
    await client.unsubscribeResource({ uri: 'test://static-text' })
  })

  test('a URI that cannot be decided, or a tool named like a resource action, is refused as invalid params', async () => {
    for (const uri of ['test://template/../static-binary', 'no-scheme', 'test://a b']) {
      assert.equal((await refusalOf(client.readResource({ uri }))).code, -32602, uri)
    }
    assert.equal((await refusalOf(client.callTool({ name: 'resource:test', arguments: {} }))).code, -32602)
  })

  test('prompts/list shows only prompts among the capabilities; prompts/get is decided on name and arguments', async () => {
    const names = (await client.listPrompts()).prompts.map((p) => p.name).sort()
    assert.deepEqual(names, ['test_prompt_with_arguments', 'test_prompt_with_embedded_resource', 'test_simple_prompt'])

    const simple = await client.getPrompt({ name: 'test_simple_prompt' })
    assert.equal((simple.messages[0]!.content as { text: string }).text, 'This is a simple prompt for testing.')

    const sanitized = await client.getPrompt({ name: 'test_prompt_with_arguments', arguments: { arg1: 'hello', arg2: 'secret' } })
    assert.equal((sanitized.messages[0]!.content as { text: string }).text, "Prompt with arguments: arg1='hello', arg2='[REDACTED]'")

    const files = await refusalOf(client.getPrompt({ name: 'test_prompt_with_embedded_resource', arguments: { resourceUri: 'file:///etc/passwd' } }))
    assert.equal(files.code, -32001)
    assert.equal(files.data['aegis/decision'].decision, 'deny')
    await client.getPrompt({ name: 'test_prompt_with_embedded_resource', arguments: { resourceUri: 'test://static-text' } })

    const args = { resourceUri: 'test://watched-resource' }
    const approval = (await refusalOf(client.getPrompt({ name: 'test_prompt_with_embedded_resource', arguments: args }))).data['aegis/decision']
    assert.equal(approval.decision, 'approval_needed')
    await env.admin('POST', `/approvals/${approval.approval!.id}/approve`, {})
    const st = (await (await fetch(approval.approval!.status_url, { headers: { authorization: `Bearer ${token}` } })).json()) as { override_token: string }
    const approved = await client.getPrompt({ name: 'test_prompt_with_embedded_resource', arguments: args, _meta: { 'aegis/override': st.override_token } })
    assert.equal((approved.messages[0]!.content as { resource: { uri: string } }).resource.uri, 'test://watched-resource')
    await assert.rejects(client.getPrompt({ name: 'test_prompt_with_embedded_resource', arguments: args, _meta: { 'aegis/override': st.override_token } }))

    const missing = await refusalOf(client.getPrompt({ name: 'test_prompt_with_image' }))
    assert.match(missing.data['aegis/decision'].reasons.join(' '), /capability:missing/)
  })

  test('completion/complete answers only for a prompt or resource among the capabilities', async () => {
    const ok = await client.complete({ ref: { type: 'ref/prompt', name: 'test_prompt_with_arguments' }, argument: { name: 'arg1', value: 'h' } })
    assert.deepEqual(ok.completion.values, [])
    const refused = await refusalOf(client.complete({ ref: { type: 'ref/prompt', name: 'test_prompt_with_image' }, argument: { name: 'x', value: '' } }))
    assert.equal(refused.code, -32602)
    await client.complete({ ref: { type: 'ref/resource', uri: 'test://template/{id}/data' }, argument: { name: 'id', value: '1' } })
  })

  test('logging/setLevel passes', async () => {
    await client.setLoggingLevel('info')
  })
})
