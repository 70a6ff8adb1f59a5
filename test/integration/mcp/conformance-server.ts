/**
 * The reference MCP server of the conformance test: the fixtures the official
 * conformance suite's server scenarios (`@modelcontextprotocol/conformance`
 * 0.1.16, `conformance list --server`) name, as each scenario's description
 * specifies them (tools `test_*` and `json_schema_2020_12_tool`, resources
 * `test://static-text`, `test://static-binary`, `test://template/{id}/data`,
 * `test://watched-resource`, prompts `test_*`, logging, completion,
 * subscriptions, SSE priming events and resumption). Built on the official
 * SDK's low-level `Server` and `StreamableHTTPServerTransport` (stateful
 * sessions) behind a node:http server on 127.0.0.1, which refuses a `Host` or
 * `Origin` other than loopback (DNS-rebinding protection, as the SDK's
 * `createMcpExpressApp` does).
 */
import { createServer, type IncomingMessage, type Server as HttpServer } from 'node:http'
import { randomUUID } from 'node:crypto'
import { Server } from '@modelcontextprotocol/sdk/server/index.js'
import { StreamableHTTPServerTransport, type EventStore } from '@modelcontextprotocol/sdk/server/streamableHttp.js'
import {
  CallToolRequestSchema,
  CompleteRequestSchema,
  CreateMessageResultSchema,
  ElicitResultSchema,
  GetPromptRequestSchema,
  ListPromptsRequestSchema,
  ListResourcesRequestSchema,
  ListResourceTemplatesRequestSchema,
  ListToolsRequestSchema,
  ReadResourceRequestSchema,
  SetLevelRequestSchema,
  SubscribeRequestSchema,
  UnsubscribeRequestSchema,
  type CallToolResult,
  type ElicitRequest,
  type GetPromptResult,
  type JSONRPCMessage,
  type ReadResourceResult,
  type ServerNotification,
  type Tool,
} from '@modelcontextprotocol/sdk/types.js'

const IMAGE = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=='
const AUDIO = 'UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA='
const NO_ARGS = { type: 'object' as const, properties: {} }

const TOOLS: Tool[] = [
  { name: 'test_simple_text', description: 'Tests simple text content response', inputSchema: NO_ARGS },
  { name: 'test_image_content', description: 'Tests image content response', inputSchema: NO_ARGS },
  { name: 'test_audio_content', description: 'Tests audio content response', inputSchema: NO_ARGS },
  { name: 'test_embedded_resource', description: 'Tests embedded resource content response', inputSchema: NO_ARGS },
  { name: 'test_multiple_content_types', description: 'Tests response with multiple content types', inputSchema: NO_ARGS },
  { name: 'test_tool_with_logging', description: 'Emits log messages while it runs', inputSchema: NO_ARGS },
  { name: 'test_tool_with_progress', description: 'Reports progress notifications', inputSchema: NO_ARGS },
  { name: 'test_error_handling', description: 'Always answers a tool error', inputSchema: NO_ARGS },
  { name: 'test_reconnection', description: 'Closes its SSE stream mid-call; the result follows on resumption (SEP-1699)', inputSchema: NO_ARGS },
  {
    name: 'test_sampling',
    description: 'Asks the client for an LLM completion',
    inputSchema: { type: 'object', properties: { prompt: { type: 'string' } }, required: ['prompt'] },
  },
  {
    name: 'test_elicitation',
    description: 'Asks the client for user input',
    inputSchema: { type: 'object', properties: { message: { type: 'string' } }, required: ['message'] },
  },
  { name: 'test_elicitation_sep1034_defaults', description: 'Elicitation with defaults for every primitive type (SEP-1034)', inputSchema: NO_ARGS },
  { name: 'test_elicitation_sep1330_enums', description: 'Elicitation with the five enum schema variants (SEP-1330)', inputSchema: NO_ARGS },
  {
    name: 'json_schema_2020_12_tool',
    description: 'Tool with JSON Schema 2020-12 features (SEP-1613)',
    inputSchema: {
      $schema: 'https://json-schema.org/draft/2020-12/schema',
      type: 'object',
      $defs: { address: { type: 'object', properties: { street: { type: 'string' }, city: { type: 'string' } } } },
      properties: { name: { type: 'string' }, address: { $ref: '#/$defs/address' } },
      additionalProperties: false,
    },
  },
]

const ELICIT_DEFAULTS: ElicitRequest['params'] = {
  message: 'Please review and update the form fields with defaults',
  requestedSchema: {
    type: 'object',
    properties: {
      name: { type: 'string', description: 'User name', default: 'John Doe' },
      age: { type: 'integer', description: 'User age', default: 30 },
      score: { type: 'number', description: 'User score', default: 95.5 },
      status: { type: 'string', description: 'User status', enum: ['active', 'inactive', 'pending'], default: 'active' },
      verified: { type: 'boolean', description: 'Verification status', default: true },
    },
    required: [],
  },
}

const ELICIT_ENUMS = {
  message: 'Please select options from the enum fields',
  requestedSchema: {
    type: 'object',
    properties: {
      untitledSingle: { type: 'string', description: 'Select one option', enum: ['option1', 'option2', 'option3'] },
      titledSingle: {
        type: 'string',
        description: 'Select one option with titles',
        oneOf: [
          { const: 'value1', title: 'First Option' },
          { const: 'value2', title: 'Second Option' },
          { const: 'value3', title: 'Third Option' },
        ],
      },
      legacyEnum: {
        type: 'string',
        description: 'Select one option (legacy)',
        enum: ['opt1', 'opt2', 'opt3'],
        enumNames: ['Option One', 'Option Two', 'Option Three'],
      },
      untitledMulti: {
        type: 'array',
        description: 'Select multiple options',
        minItems: 1,
        maxItems: 3,
        items: { type: 'string', enum: ['option1', 'option2', 'option3'] },
      },
      titledMulti: {
        type: 'array',
        description: 'Select multiple options with titles',
        minItems: 1,
        maxItems: 3,
        items: {
          anyOf: [
            { const: 'value1', title: 'First Choice' },
            { const: 'value2', title: 'Second Choice' },
            { const: 'value3', title: 'Third Choice' },
          ],
        },
      },
    },
    required: [],
  },
}

const TEMPLATE = /^test:\/\/template\/([^/]+)\/data$/

function text(t: string): CallToolResult {
  return { content: [{ type: 'text', text: t }] }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/** An in-memory event store (SEP-1699): POST streams get priming events, and a resumed stream replays what followed. */
function eventStore(): EventStore {
  const events = new Map<string, { streamId: string; message: JSONRPCMessage }>()
  let seq = 0
  return {
    async storeEvent(streamId, message) {
      const id = `${streamId}::${String(++seq).padStart(12, '0')}`
      events.set(id, { streamId, message })
      return id
    },
    async replayEventsAfter(lastEventId, { send }) {
      const streamId = lastEventId.split('::')[0]!
      for (const [id, e] of events) {
        if (e.streamId === streamId && id > lastEventId && Object.keys(e.message).length > 0) await send(id, e.message)
      }
      return streamId
    },
  }
}

function build(transports: Map<string, StreamableHTTPServerTransport>): Server {
  const server = new Server(
    { name: 'aegis-conformance-reference', version: '1.0.0' },
    {
      capabilities: {
        tools: { listChanged: true },
        resources: { subscribe: true, listChanged: true },
        prompts: { listChanged: true },
        logging: {},
        completions: {},
      },
    },
  )
  const subscriptions = new Set<string>()
  const log = (data: string): void => {
    server.notification({ method: 'notifications/message', params: { level: 'info', logger: 'conformance-reference', data } }).catch(() => {})
  }

  server.setRequestHandler(ListToolsRequestSchema, async () => ({ tools: TOOLS }))
  server.setRequestHandler(CallToolRequestSchema, async (request, extra): Promise<CallToolResult> => {
    const args = request.params.arguments ?? {}
    const notify = (n: ServerNotification): Promise<void> => extra.sendNotification(n)
    // Requests to the client go on this call's own stream (relatedRequestId), not the GET stream, which the client may not have opened yet.
    switch (request.params.name) {
      case 'test_simple_text':
        return text('This is a simple text response for testing.')
      case 'test_image_content':
        return { content: [{ type: 'image', data: IMAGE, mimeType: 'image/png' }] }
      case 'test_audio_content':
        return { content: [{ type: 'audio', data: AUDIO, mimeType: 'audio/wav' }] }
      case 'test_embedded_resource':
        return {
          content: [{ type: 'resource', resource: { uri: 'test://embedded-resource', mimeType: 'text/plain', text: 'This is an embedded resource content.' } }],
        }
      case 'test_multiple_content_types':
        return {
          content: [
            { type: 'text', text: 'Multiple content types test:' },
            { type: 'image', data: IMAGE, mimeType: 'image/png' },
            {
              type: 'resource',
              resource: { uri: 'test://mixed-content-resource', mimeType: 'application/json', text: JSON.stringify({ test: 'data', value: 123 }) },
            },
          ],
        }
      case 'test_tool_with_logging':
        for (const data of ['Tool execution started', 'Tool processing data', 'Tool execution completed']) {
          await notify({ method: 'notifications/message', params: { level: 'info', data } })
          await sleep(20)
        }
        return text('Tool with logging executed successfully')
      case 'test_tool_with_progress': {
        const progressToken = request.params._meta?.progressToken ?? 0
        for (const progress of [0, 50, 100]) {
          await notify({ method: 'notifications/progress', params: { progressToken, progress, total: 100, message: `Completed step ${progress} of 100` } })
          await sleep(20)
        }
        return text(String(progressToken))
      }
      case 'test_error_handling':
        return { isError: true, content: [{ type: 'text', text: 'This tool intentionally returns an error for testing' }] }
      case 'test_reconnection': {
        const t = extra.sessionId === undefined ? undefined : transports.get(extra.sessionId)
        // The client must reconnect (GET with Last-Event-ID) to see the result.
        t?.closeSSEStream(extra.requestId)
        await sleep(100)
        return text('Reconnection test completed successfully. If you received this, the client properly reconnected after stream closure.')
      }
      case 'test_sampling': {
        const r = await extra.sendRequest(
          {
            method: 'sampling/createMessage',
            params: { messages: [{ role: 'user', content: { type: 'text', text: String(args.prompt ?? '') } }], maxTokens: 100 },
          },
          CreateMessageResultSchema,
        )
        const content = r.content
        return text(`LLM response: ${!Array.isArray(content) && content.type === 'text' ? content.text : 'No response'}`)
      }
      case 'test_elicitation': {
        const r = await extra.sendRequest(
          {
            method: 'elicitation/create',
            params: {
              message: String(args.message ?? ''),
              requestedSchema: { type: 'object', properties: { response: { type: 'string', description: "User's response" } }, required: ['response'] },
            },
          },
          ElicitResultSchema,
        )
        return text(`User response: action=${r.action}, content=${JSON.stringify(r.content ?? {})}`)
      }
      case 'test_elicitation_sep1034_defaults': {
        const r = await extra.sendRequest({ method: 'elicitation/create', params: ELICIT_DEFAULTS }, ElicitResultSchema)
        return text(`Elicitation completed: action=${r.action}, content=${JSON.stringify(r.content ?? {})}`)
      }
      case 'test_elicitation_sep1330_enums': {
        // enumNames and titled multi-selects are newer than the SDK's ElicitRequest type: the request is sent as the scenario specifies it.
        const r = await extra.sendRequest({ method: 'elicitation/create', params: ELICIT_ENUMS } as unknown as ElicitRequest, ElicitResultSchema)
        return text(`Elicitation completed: action=${r.action}, content=${JSON.stringify(r.content ?? {})}`)
      }
      case 'json_schema_2020_12_tool':
        return text(`JSON Schema 2020-12 tool called with: ${JSON.stringify(args)}`)
      default:
        return { isError: true, content: [{ type: 'text', text: `unknown tool ${request.params.name}` }] }
    }
  })

  server.setRequestHandler(ListResourcesRequestSchema, async () => ({
    resources: [
      { uri: 'test://static-text', name: 'static-text', title: 'Static Text Resource', mimeType: 'text/plain' },
      { uri: 'test://static-binary', name: 'static-binary', title: 'Static Binary Resource', mimeType: 'image/png' },
      { uri: 'test://watched-resource', name: 'watched-resource', title: 'Watched Resource', mimeType: 'text/plain' },
    ],
  }))
  server.setRequestHandler(ListResourceTemplatesRequestSchema, async () => ({
    resourceTemplates: [{ uriTemplate: 'test://template/{id}/data', name: 'template', title: 'Resource Template', mimeType: 'application/json' }],
  }))
  server.setRequestHandler(ReadResourceRequestSchema, async (request): Promise<ReadResourceResult> => {
    const uri = request.params.uri
    if (uri === 'test://static-text') return { contents: [{ uri, mimeType: 'text/plain', text: 'This is the content of the static text resource.' }] }
    if (uri === 'test://static-binary') return { contents: [{ uri, mimeType: 'image/png', blob: IMAGE }] }
    if (uri === 'test://watched-resource') return { contents: [{ uri, mimeType: 'text/plain', text: 'Watched resource content' }] }
    const m = TEMPLATE.exec(uri)
    if (m !== null) {
      const id = m[1]!
      return { contents: [{ uri, mimeType: 'application/json', text: JSON.stringify({ id, templateTest: true, data: `Data for ID: ${id}` }) }] }
    }
    throw new Error(`resource not found: ${uri}`)
  })
  server.setRequestHandler(SubscribeRequestSchema, async (request) => {
    subscriptions.add(request.params.uri)
    log(`Subscribed to resource: ${request.params.uri}`)
    return {}
  })
  server.setRequestHandler(UnsubscribeRequestSchema, async (request) => {
    subscriptions.delete(request.params.uri)
    log(`Unsubscribed from resource: ${request.params.uri}`)
    return {}
  })

  server.setRequestHandler(ListPromptsRequestSchema, async () => ({
    prompts: [
      { name: 'test_simple_prompt', title: 'Simple Test Prompt', description: 'A simple prompt without arguments' },
      {
        name: 'test_prompt_with_arguments',
        title: 'Prompt With Arguments',
        description: 'A prompt with required arguments',
        arguments: [
          { name: 'arg1', description: 'First test argument', required: true },
          { name: 'arg2', description: 'Second test argument', required: true },
        ],
      },
      {
        name: 'test_prompt_with_embedded_resource',
        title: 'Prompt With Embedded Resource',
        description: 'A prompt that includes an embedded resource',
        arguments: [{ name: 'resourceUri', description: 'URI of the resource to embed', required: true }],
      },
      { name: 'test_prompt_with_image', title: 'Prompt With Image', description: 'A prompt that includes image content' },
    ],
  }))
  server.setRequestHandler(GetPromptRequestSchema, async (request): Promise<GetPromptResult> => {
    const a = request.params.arguments ?? {}
    switch (request.params.name) {
      case 'test_simple_prompt':
        return { messages: [{ role: 'user', content: { type: 'text', text: 'This is a simple prompt for testing.' } }] }
      case 'test_prompt_with_arguments':
        return { messages: [{ role: 'user', content: { type: 'text', text: `Prompt with arguments: arg1='${a.arg1}', arg2='${a.arg2}'` } }] }
      case 'test_prompt_with_embedded_resource':
        return {
          messages: [
            {
              role: 'user',
              content: { type: 'resource', resource: { uri: a.resourceUri ?? '', mimeType: 'text/plain', text: 'Embedded resource content for testing.' } },
            },
            { role: 'user', content: { type: 'text', text: 'Please process the embedded resource above.' } },
          ],
        }
      case 'test_prompt_with_image':
        return {
          messages: [
            { role: 'user', content: { type: 'image', data: IMAGE, mimeType: 'image/png' } },
            { role: 'user', content: { type: 'text', text: 'Please analyze the image above.' } },
          ],
        }
      default:
        throw new Error(`prompt not found: ${request.params.name}`)
    }
  })

  server.setRequestHandler(SetLevelRequestSchema, async (request) => {
    log(`Log level set to: ${request.params.level}`)
    return {}
  })
  server.setRequestHandler(CompleteRequestSchema, async () => ({ completion: { values: [], total: 0, hasMore: false } }))
  return server
}

const LOOPBACK = new Set(['localhost', '127.0.0.1', '[::1]'])

/** The request's `Host` and `Origin` name loopback (or `Origin` is absent). */
function loopbackOnly(req: IncomingMessage): boolean {
  const host = req.headers.host ?? ''
  const hostname = host.startsWith('[') ? host.slice(0, host.indexOf(']') + 1) : host.split(':')[0]!
  if (!LOOPBACK.has(hostname)) return false
  const origin = req.headers.origin
  if (origin === undefined) return true
  try {
    return LOOPBACK.has(new URL(origin).hostname) || LOOPBACK.has(`[${new URL(origin).hostname}]`)
  } catch {
    return false
  }
}

export interface ConformanceServer {
  url: string
  close(): Promise<void>
}

/** Starts the reference server on 127.0.0.1 (port 0); its MCP endpoint is `url`. */
export async function startConformanceServer(): Promise<ConformanceServer> {
  const transports = new Map<string, StreamableHTTPServerTransport>()
  const servers = new Set<Server>()
  const http: HttpServer = createServer((req, res) => {
    void (async () => {
      if (!loopbackOnly(req)) {
        res.writeHead(403, { 'content-type': 'application/json' })
        res.end(JSON.stringify({ jsonrpc: '2.0', id: null, error: { code: -32000, message: 'Host or Origin not allowed' } }))
        return
      }
      const sid = req.headers['mcp-session-id']
      let t = typeof sid === 'string' ? transports.get(sid) : undefined
      if (t === undefined) {
        if (req.method !== 'POST' || typeof sid === 'string') {
          res.writeHead(typeof sid === 'string' ? 404 : 400, { 'content-type': 'application/json' })
          res.end(JSON.stringify({ jsonrpc: '2.0', id: null, error: { code: -32000, message: 'Invalid or missing session ID' } }))
          return
        }
        const created: StreamableHTTPServerTransport = new StreamableHTTPServerTransport({
          sessionIdGenerator: () => randomUUID(),
          eventStore: eventStore(),
          retryInterval: 1000,
          onsessioninitialized: (id) => {
            transports.set(id, created)
          },
          onsessionclosed: (id) => {
            transports.delete(id)
          },
        })
        const server = build(transports)
        servers.add(server)
        await server.connect(created)
        t = created
      }
      await t.handleRequest(req, res)
    })().catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ jsonrpc: '2.0', id: null, error: { code: -32603, message: String(err) } }))
    })
  })
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve))
  const address = http.address()
  if (address === null || typeof address === 'string') throw new Error('no port')
  return {
    url: `http://127.0.0.1:${address.port}/mcp`,
    async close() {
      for (const s of servers) await s.close().catch(() => {})
      http.closeAllConnections()
      await new Promise<void>((resolve) => http.close(() => resolve()))
    },
  }
}
