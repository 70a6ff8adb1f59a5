/**
 * A real MCP tool server for the MCP-mode tests and bench: the official
 * SDK's McpServer behind its StreamableHTTPServerTransport (stateful
 * sessions), on 127.0.0.1 port 0. It records what reaches it (headers, tool
 * arguments, closed sessions) so tests can assert what the gateway forwarded.
 */
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http'
import { randomUUID } from 'node:crypto'
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js'
import { z } from 'zod'

export interface UpstreamCall {
  tool: string
  args: Record<string, unknown>
  meta?: Record<string, unknown>
}

export interface McpUpstream {
  url: string
  /** Headers of every HTTP request that reached the server. */
  requests: Array<{ method: string; headers: IncomingHttpHeaders }>
  /** Every JSON-RPC message the server's transport handed to the server, in order. */
  messages: Array<{ method?: string; id?: unknown; params?: Record<string, unknown> }>
  calls: UpstreamCall[]
  closedSessions: string[]
  /** Resolved by the test to let `slow.progress` finish after its first progress notification. */
  release(): void
  close(): Promise<void>
}

export const CONTACT = {
  name: 'Ada',
  ssn: '123-45-6789',
  contacts: [
    { name: 'Bob', ssn: '987-65-4321' },
    { name: 'Eve', ssn: '555-55-5555' },
  ],
}

/** Every tool the server offers: more than the test agent may see. */
export const UPSTREAM_TOOLS = [
  'crm.read',
  'crm.search',
  'crm.export',
  'crm.delete',
  'crm.purge',
  'crm.admin',
  'crm.merge',
  'files.delete',
  'payments.charge',
  'payments.transfer',
  'payments.refund',
  'slow.progress',
]

export async function startMcpUpstream(opts: { json?: boolean } = {}): Promise<McpUpstream> {
  const requests: McpUpstream['requests'] = []
  const messages: McpUpstream['messages'] = []
  const calls: UpstreamCall[] = []
  const closedSessions: string[] = []
  let releaseWaiter: (() => void) | null = null
  const released = (): Promise<void> =>
    new Promise((r) => {
      releaseWaiter = r
    })

  const build = (): McpServer => {
    const server = new McpServer({ name: 'crm-tools', version: '1.0.0' })
    const record = (tool: string, args: Record<string, unknown>): void => {
      calls.push({ tool, args })
    }
    const echo = (tool: string) => async (args: Record<string, unknown>, extra: { _meta?: Record<string, unknown> }) => {
      calls.push({ tool, args, ...(extra._meta !== undefined ? { meta: { ...extra._meta } } : {}) })
      return { content: [{ type: 'text' as const, text: JSON.stringify({ tool, args }) }] }
    }
    const any = {
      q: z.string().optional(),
      limit: z.number().optional(),
      format: z.string().optional(),
      id: z.string().optional(),
      count: z.number().optional(),
    }
    server.registerTool('crm.read', { description: 'Read a contact', inputSchema: { id: z.string().optional() } }, async (args) => {
      record('crm.read', args)
      return { content: [{ type: 'text' as const, text: JSON.stringify(CONTACT) }], structuredContent: CONTACT }
    })
    for (const t of ['crm.search', 'crm.export', 'crm.delete', 'crm.purge', 'crm.admin', 'crm.merge', 'files.delete', 'payments.refund'])
      server.registerTool(t, { description: t, inputSchema: any }, echo(t))
    server.registerTool(
      'payments.charge',
      { description: 'Charge a card', inputSchema: { card_number: z.string(), amount: z.number() } },
      echo('payments.charge'),
    )
    server.registerTool('payments.transfer', { description: 'Transfer money', inputSchema: { amount: z.number(), to: z.string() } }, echo('payments.transfer'))
    server.registerTool('slow.progress', { description: 'Reports progress, then waits for the test', inputSchema: {} }, async (_args, extra) => {
      record('slow.progress', {})
      const token = extra._meta?.progressToken
      const wait = released()
      if (token !== undefined) await extra.sendNotification({ method: 'notifications/progress', params: { progressToken: token, progress: 1, total: 2 } })
      // Finishes only once the client saw the first notification: a gateway that buffered the stream would hang here.
      await wait
      if (token !== undefined) await extra.sendNotification({ method: 'notifications/progress', params: { progressToken: token, progress: 2, total: 2 } })
      return { content: [{ type: 'text' as const, text: 'done' }] }
    })
    return server
  }

  const transports = new Map<string, StreamableHTTPServerTransport>()
  const http: Server = createServer((req, res) => {
    requests.push({ method: req.method ?? '', headers: req.headers })
    void (async () => {
      const sid = req.headers['mcp-session-id']
      let t = typeof sid === 'string' ? transports.get(sid) : undefined
      if (t === undefined) {
        if (req.method !== 'POST' || typeof sid === 'string') {
          res
            .writeHead(404, { 'content-type': 'application/json' })
            .end(JSON.stringify({ jsonrpc: '2.0', id: null, error: { code: -32001, message: 'session not found' } }))
          return
        }
        const created: StreamableHTTPServerTransport = new StreamableHTTPServerTransport({
          sessionIdGenerator: () => randomUUID(),
          enableJsonResponse: opts.json === true,
          onsessioninitialized: (id) => {
            transports.set(id, created)
          },
          onsessionclosed: (id) => {
            transports.delete(id)
            closedSessions.push(id)
          },
        })
        t = created
        await build().connect(created)
        // Counted where the SDK delivers them: what the server received, whether or not it acted on it.
        const deliver = created.onmessage
        created.onmessage = (message, extra) => {
          messages.push(message as McpUpstream['messages'][number])
          deliver?.(message, extra)
        }
      }
      await t.handleRequest(req, res)
    })().catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(500).end(String(err))
    })
  })
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve))
  const port = (http.address() as { port: number }).port
  return {
    url: `http://127.0.0.1:${port}/mcp`,
    requests,
    messages,
    calls,
    closedSessions,
    release: () => {
      releaseWaiter?.()
    },
    close: async () => {
      for (const t of transports.values()) await t.close().catch(() => {})
      http.closeAllConnections()
      await new Promise<void>((resolve) => http.close(() => resolve()))
    },
  }
}
