/**
 * MCP mode benchmark (issue 9 goal: the gateway adds under 1 ms at p50).
 * One official-SDK MCP server on loopback (StreamableHTTPServerTransport,
 * JSON responses, then SSE responses); the same SDK Client code calls one
 * `tools/call` directly and through a real gateway (buildGateway following a
 * real control plane, Cedar bundle active, decision audited), alternating
 * call by call so both see the same machine state. Sequential round trips
 * give the added latency; a concurrent run (16 in flight) shows it under load.
 * Client, gateway and server share this process, so absolute numbers are
 * pessimistic; the difference is what the gateway costs.
 */
import { setMaxListeners } from 'node:events'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { activatePolicy, startGatewayEnv } from '../test/helpers/gateway-env.js'
import { startMcpUpstream, type McpUpstream } from '../test/integration/mcp/upstream.js'
import { percentiles } from './util.js'

export interface McpLatency {
  p50Ms: number
  p99Ms: number
  minMs: number
  calls: number
}

export interface McpFlavorResult {
  direct: McpLatency
  gateway: McpLatency
  /** gateway p50 − direct p50, sequential. */
  addedP50Ms: number
  /** gateway p50 / direct p50, sequential. */
  ratioP50: number
  /** Median of (gateway − direct) over consecutive call pairs: steadier than the p50 difference on a busy machine. */
  addedPairedP50Ms: number
  /** gateway min − direct min: the added cost when nothing else competes for the CPU. */
  addedMinMs: number
  concurrent: { inFlight: number; directPerSec: number; gatewayPerSec: number; direct: McpLatency; gateway: McpLatency }
}

export interface McpBenchResult {
  json: McpFlavorResult
  sse: McpFlavorResult
  /** Goal: the gateway adds under 1 ms at p50 (JSON responses, sequential, paired median). */
  goalMet: boolean
}

const CEDAR = `
@id("search")
permit (principal, action == Action::"crm.search", resource);

@id("search-limit")
forbid (principal, action == Action::"crm.search", resource)
when { context.params has limit && context.params.limit > 100 };
`

async function connect(url: string, token?: string): Promise<Client> {
  const client = new Client({ name: 'aegis-bench', version: '1.0.0' })
  const transport = new StreamableHTTPClientTransport(new URL(url), token ? { requestInit: { headers: { authorization: `Bearer ${token}` } } } : {})
  await client.connect(transport)
  // The SDK transport hands one AbortSignal to every fetch, and each call adds a listener to it: thousands of calls would print leak warnings.
  const signal = (transport as unknown as { _abortController?: AbortController })._abortController?.signal
  if (signal) setMaxListeners(0, signal)
  return client
}

async function callOnce(client: Client): Promise<number> {
  const t = performance.now()
  const r = await client.callTool({ name: 'crm.search', arguments: { q: 'acme', limit: 10 } })
  if (r.isError === true) throw new Error(`bench call refused: ${JSON.stringify(r.content)}`)
  return performance.now() - t
}

function latency(samples: number[]): McpLatency {
  const p = percentiles(samples)
  return { p50Ms: p.p50, p99Ms: p.p99, minMs: Math.min(...samples), calls: samples.length }
}

async function concurrent(client: Client, inFlight: number, seconds: number, upstream: McpUpstream): Promise<{ perSec: number; samples: number[] }> {
  const samples: number[] = []
  const start = performance.now()
  const end = start + seconds * 1000
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (performance.now() < end) {
        samples.push(await callOnce(client))
        if (upstream.calls.length > 10_000) upstream.calls.length = 0
      }
    }),
  )
  return { perSec: samples.length / ((performance.now() - start) / 1000), samples }
}

async function flavor(json: boolean, seconds: number): Promise<McpFlavorResult> {
  const upstream = await startMcpUpstream({ json })
  const env = await startGatewayEnv()
  const clients: Client[] = []
  try {
    const cred = await env.agent('bench-bot', ['crm.search'])
    const route = '/mcp/crm'
    const gw = await env.startGateway({ gateway: { routes: [{ path: route, upstream: upstream.url, mode: 'mcp' }] } })
    const version = await activatePolicy(env, CEDAR)
    while (gw.gw.deps.state.policyFor(env.tenant)?.version !== version) await new Promise((r) => setTimeout(r, 5))
    const token = await env.token(cred)
    const direct = await connect(upstream.url)
    const through = await connect(gw.url + route, token)
    clients.push(direct, through)
    // Warm-up: connections, JIT, the gateway's verified-token and manifest caches.
    for (let i = 0; i < 200; i++) {
      await callOnce(direct)
      await callOnce(through)
    }

    const d: number[] = []
    const g: number[] = []
    const end = performance.now() + seconds * 1000 * 0.6
    while (performance.now() < end) {
      d.push(await callOnce(direct))
      g.push(await callOnce(through))
      if (upstream.calls.length > 10_000) upstream.calls.length = 0
      if (upstream.requests.length > 10_000) upstream.requests.length = 0
    }
    const inFlight = 16
    const cd = await concurrent(direct, inFlight, seconds * 0.2, upstream)
    const cg = await concurrent(through, inFlight, seconds * 0.2, upstream)
    const dl = latency(d)
    const gl = latency(g)
    return {
      direct: dl,
      gateway: gl,
      addedP50Ms: gl.p50Ms - dl.p50Ms,
      ratioP50: gl.p50Ms / dl.p50Ms,
      addedPairedP50Ms: percentiles(g.map((x, i) => x - d[i]!)).p50,
      addedMinMs: gl.minMs - dl.minMs,
      concurrent: { inFlight, directPerSec: cd.perSec, gatewayPerSec: cg.perSec, direct: latency(cd.samples), gateway: latency(cg.samples) },
    }
  } finally {
    for (const c of clients) await c.close().catch(() => {})
    await env.close()
    await upstream.close()
  }
}

/** Runs the MCP benchmark for about `seconds` per response flavor (JSON, then SSE). */
export async function benchMcp(seconds: number): Promise<McpBenchResult> {
  const json = await flavor(true, seconds)
  const sse = await flavor(false, seconds)
  return { json, sse, goalMet: json.addedPairedP50Ms < 1 }
}

/** `node --import tsx bench/mcp.ts [seconds]` prints the result. */
if (import.meta.url === `file://${process.argv[1]}`) {
  const seconds = Number(process.argv[2] ?? process.env.AEGIS_BENCH_SECONDS ?? 5)
  benchMcp(seconds).then(
    (r) => {
      console.log(JSON.stringify(r, (_k, v: unknown) => (typeof v === 'number' ? Math.round(v * 1000) / 1000 : v), 2))
    },
    (err: unknown) => {
      console.error(err)
      process.exitCode = 1
    },
  )
}
