/**
 * Token issuance over HTTP on loopback: `client_credentials` with a bootstrap
 * secret, audit on, embedded SQLite, 50 connections, against a control plane
 * in its own process. Compared with raw node:crypto Ed25519 signing measured
 * in the same run.
 */
import { readFileSync } from 'node:fs'
import autocannon from 'autocannon'
import { adminCall, startServeProcess } from './server-process.js'

export interface IssuanceResult {
  tokensPerSec: number
  p50Ms: number
  p99Ms: number
  errors: number
  non2xx: number
  seconds: number
  /** CPU the server process used during the measured run, % of one core (NaN where /proc is missing). */
  serverCpuPct: number
  /** Server CPU time per issued token (all threads), µs. */
  serverCpuUsPerToken: number
  /** CPU time of the server's main thread (the event loop) per token, µs: one loop tops out at 1e6 / this tokens/s. */
  loopCpuUsPerToken: number
  /** CPU the load generator (this process) used during the measured run, % of one core. */
  benchCpuPct: number
}

/** utime + stime of a process (or with `thread`, of its main thread) in ms, from /proc (Linux); NaN elsewhere. */
function processCpuMs(pid: number | undefined, thread = false): number {
  if (pid === undefined) return NaN
  try {
    const stat = readFileSync(thread ? `/proc/${pid}/task/${pid}/stat` : `/proc/${pid}/stat`, 'utf8')
    // Fields after the parenthesized command name; utime and stime are fields 14 and 15 (clock ticks, 100/s on Linux).
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(f[11]) + Number(f[12])) * 10
  } catch {
    return NaN
  }
}

export async function benchIssuance(seconds: number, env: Record<string, string> = {}): Promise<IssuanceResult> {
  const server = await startServeProcess('control-plane', {
    // The bench measures issuance, not the limiter: one client from one address.
    AEGIS_RATE_LIMIT_PER_CLIENT: '100000000',
    AEGIS_RATE_LIMIT_PER_IP: '100000000',
    ...env,
  })
  try {
    await adminCall(server.url, server.adminToken, 'POST', '/admin/v1/tenants', { id: 'bench', name: 'Bench' })
    await adminCall(server.url, server.adminToken, 'POST', '/admin/v1/tenants/bench/agents', {
      agent_id: 'bench-agent',
      scopes: ['payments:write', 'crm:read'],
      capabilities: ['payments.transfer', 'crm.read'],
      max_ttl_seconds: 600,
    })
    const cred = (await adminCall(server.url, server.adminToken, 'POST', '/admin/v1/tenants/bench/agents/bench-agent/bootstrap-credentials', {
      ttl_seconds: 3600,
      single_use: false,
    })) as { client_id: string; client_secret: string }
    const basic = Buffer.from(`${cred.client_id}:${cred.client_secret}`).toString('base64')
    // Warm-up so JIT and caches settle before measuring.
    await autocannon({
      url: `${server.url}/oauth2/token`,
      method: 'POST',
      connections: 50,
      duration: 2,
      headers: { authorization: `Basic ${basic}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: 'grant_type=client_credentials',
    })
    const serverCpu0 = processCpuMs(server.child.pid)
    const loopCpu0 = processCpuMs(server.child.pid, true)
    const benchCpu0 = process.cpuUsage()
    const t0 = performance.now()
    const r = await autocannon({
      url: `${server.url}/oauth2/token`,
      method: 'POST',
      connections: 50,
      duration: seconds,
      headers: { authorization: `Basic ${basic}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: 'grant_type=client_credentials',
    })
    const wallMs = performance.now() - t0
    const serverCpuMs = processCpuMs(server.child.pid) - serverCpu0
    const loopCpuMs = processCpuMs(server.child.pid, true) - loopCpu0
    const benchCpu = process.cpuUsage(benchCpu0)
    return {
      tokensPerSec: r.requests.average,
      p50Ms: r.latency.p50,
      p99Ms: r.latency.p99,
      errors: r.errors,
      non2xx: r.non2xx,
      seconds,
      serverCpuPct: (100 * serverCpuMs) / wallMs,
      serverCpuUsPerToken: r.requests.total > 0 ? (1000 * serverCpuMs) / r.requests.total : NaN,
      loopCpuUsPerToken: r.requests.total > 0 ? (1000 * loopCpuMs) / r.requests.total : NaN,
      benchCpuPct: (100 * (benchCpu.user + benchCpu.system)) / 1000 / wallMs,
    }
  } finally {
    await server.stop()
  }
}
