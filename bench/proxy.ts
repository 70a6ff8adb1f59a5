/**
 * Reverse-proxy mode benchmark (goal: the gateway adds under 1 ms at p50).
 * One small node:http upstream on loopback; the same JSON POST (a query
 * string and a JSON object body, so the gateway parses both, decides on them
 * and forwards their re-serialization) is sent directly to the upstream and
 * through a real gateway's `mode: "proxy"` route (buildGateway following a
 * real control plane, Cedar bundle active, decision audited), alternating
 * call by call so both see the same machine state. Sequential round trips
 * give the added latency; a concurrent run (16 in flight) shows it under load.
 * Client, gateway and upstream share this process, so absolute numbers are
 * pessimistic; the difference is what the gateway costs.
 */
import { Agent, request } from 'node:http'
import { activatePolicy, startGatewayEnv } from '../test/helpers/gateway-env.js'
import { startUpstream, type Upstream } from '../test/helpers/gateway-upstream.js'
import { percentiles } from './util.js'

export interface ProxyLatency {
  p50Ms: number
  p99Ms: number
  minMs: number
  calls: number
}

export interface ProxyBenchResult {
  direct: ProxyLatency
  gateway: ProxyLatency
  /** gateway p50 − direct p50, sequential. */
  addedP50Ms: number
  /** gateway p50 / direct p50, sequential. */
  ratioP50: number
  /** Median of (gateway − direct) over consecutive call pairs: steadier than the p50 difference on a busy machine. */
  addedPairedP50Ms: number
  /** gateway min − direct min: the added cost when nothing else competes for the CPU. */
  addedMinMs: number
  concurrent: { inFlight: number; directPerSec: number; gatewayPerSec: number; direct: ProxyLatency; gateway: ProxyLatency }
  /** Goal: the gateway adds under 1 ms at p50 (sequential, paired median). */
  goalMet: boolean
}

const CEDAR = `
@id("search")
permit (principal, action == Action::"crm.search", resource);

@id("search-limit")
forbid (principal, action == Action::"crm.search", resource)
when { context.params has limit && context.params.limit > 100 };
`

const ROUTE = '/tools/x'
const PATH = '/contacts/search?q=acme&region=eu&page=2'
const BODY = JSON.stringify({ q: 'acme', limit: 10, fields: ['name', 'email'], filter: { status: 'active', since: '2026-01-01' } })

interface Target {
  host: string
  port: number
  path: string
  headers: Record<string, string | number>
}

function target(base: string, path: string, token?: string): Target {
  const u = new URL(base + path)
  return {
    host: u.hostname,
    port: Number(u.port),
    path: u.pathname + u.search,
    headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(BODY), ...(token ? { authorization: `Bearer ${token}` } : {}) },
  }
}

function callOnce(t: Target, agent: Agent): Promise<number> {
  return new Promise((resolve, reject) => {
    const start = performance.now()
    const req = request({ host: t.host, port: t.port, path: t.path, method: 'POST', headers: t.headers, agent }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => {
        if (res.statusCode !== 200) reject(new Error(`bench call answered ${res.statusCode}: ${Buffer.concat(chunks).toString('utf8')}`))
        else resolve(performance.now() - start)
      })
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end(BODY)
  })
}

function latency(samples: number[]): ProxyLatency {
  const p = percentiles(samples)
  return { p50Ms: p.p50, p99Ms: p.p99, minMs: Math.min(...samples), calls: samples.length }
}

async function concurrent(t: Target, agent: Agent, inFlight: number, seconds: number, upstream: Upstream): Promise<{ perSec: number; samples: number[] }> {
  const samples: number[] = []
  const start = performance.now()
  const end = start + seconds * 1000
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (performance.now() < end) {
        samples.push(await callOnce(t, agent))
        if (upstream.seen.length > 10_000) upstream.seen.length = 0
      }
    }),
  )
  return { perSec: samples.length / ((performance.now() - start) / 1000), samples }
}

/** Runs the reverse-proxy benchmark for about `seconds`. */
export async function benchProxy(seconds: number): Promise<ProxyBenchResult> {
  const upstream = await startUpstream()
  const env = await startGatewayEnv()
  const agents: Agent[] = []
  try {
    const cred = await env.agent('bench-bot', ['crm.search'])
    const gw = await env.startGateway({ gateway: { routes: [{ path: ROUTE, upstream: `${upstream.url}/api`, mode: 'proxy', tool: 'crm.search' }] } })
    const version = await activatePolicy(env, CEDAR)
    const deadline = performance.now() + 30_000
    while (gw.gw.deps.state.policyFor(env.tenant)?.version !== version) {
      if (performance.now() > deadline) throw new Error('bench: the gateway never received the policy bundle')
      await new Promise((r) => setTimeout(r, 5))
    }
    const token = await env.token(cred)
    const direct = target(`${upstream.url}/api`, PATH)
    const through = target(gw.url + ROUTE, PATH, token)
    const seq = new Agent({ keepAlive: true, maxSockets: 1 })
    const many = new Agent({ keepAlive: true })
    agents.push(seq, many)
    // The gateway must forward what it was sent (same path, query and body as the direct call).
    await callOnce(through, seq)
    const seen = upstream.seen.at(-1)
    if (!seen?.url.startsWith('/api/contacts/search?') || JSON.stringify(JSON.parse(seen.body)) !== BODY)
      throw new Error(`bench: the upstream saw ${JSON.stringify(seen)}`)
    // Warm-up: connections, JIT, the gateway's verified-token cache.
    for (let i = 0; i < 200; i++) {
      await callOnce(direct, seq)
      await callOnce(through, seq)
    }

    const d: number[] = []
    const g: number[] = []
    const end = performance.now() + seconds * 1000 * 0.6
    while (performance.now() < end) {
      d.push(await callOnce(direct, seq))
      g.push(await callOnce(through, seq))
      if (upstream.seen.length > 10_000) upstream.seen.length = 0
    }
    const inFlight = 16
    const cd = await concurrent(direct, many, inFlight, seconds * 0.2, upstream)
    const cg = await concurrent(through, many, inFlight, seconds * 0.2, upstream)
    const dl = latency(d)
    const gl = latency(g)
    const addedPairedP50Ms = percentiles(g.map((x, i) => x - d[i]!)).p50
    return {
      direct: dl,
      gateway: gl,
      addedP50Ms: gl.p50Ms - dl.p50Ms,
      ratioP50: gl.p50Ms / dl.p50Ms,
      addedPairedP50Ms,
      addedMinMs: gl.minMs - dl.minMs,
      concurrent: { inFlight, directPerSec: cd.perSec, gatewayPerSec: cg.perSec, direct: latency(cd.samples), gateway: latency(cg.samples) },
      goalMet: addedPairedP50Ms < 1,
    }
  } finally {
    for (const a of agents) a.destroy()
    await env.close()
    await upstream.close()
  }
}

/** `node --import tsx bench/proxy.ts [seconds]` prints the result. */
if (import.meta.url === `file://${process.argv[1]}`) {
  const seconds = Number(process.argv[2] ?? process.env.AEGIS_BENCH_SECONDS ?? 5)
  benchProxy(seconds).then(
    (r) => {
      console.log(JSON.stringify(r, (_k, v: unknown) => (typeof v === 'number' ? Math.round(v * 1000) / 1000 : v), 2))
    },
    (err: unknown) => {
      console.error(err)
      process.exitCode = 1
    },
  )
}
