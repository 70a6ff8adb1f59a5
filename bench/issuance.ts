/**
 * Token issuance over HTTP on loopback: `client_credentials` with a bootstrap
 * secret, audit on, embedded SQLite, 50 connections, against a control plane
 * in its own process. Compared with raw node:crypto Ed25519 signing and with
 * node-oidc-provider under the same load, measured in the same run.
 */
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import autocannon from 'autocannon'
import { adminCall, freePort, startServeProcess } from './server-process.js'
import { processCpuMs } from './util.js'

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

/**
 * autocannon against a token endpoint (50 connections, 2 s warm-up), with the
 * server process's CPU over the measured run read from /proc.
 */
async function measureTokenEndpoint(url: string, pid: number | undefined, basic: string, body: string, seconds: number): Promise<IssuanceResult> {
  const request = {
    url,
    method: 'POST' as const,
    connections: 50,
    headers: { authorization: `Basic ${basic}`, 'content-type': 'application/x-www-form-urlencoded' },
    body,
  }
  // Warm-up so JIT and caches settle before measuring.
  await autocannon({ ...request, duration: 2 })
  const serverCpu0 = processCpuMs(pid)
  const loopCpu0 = processCpuMs(pid, true)
  const benchCpu0 = process.cpuUsage()
  const t0 = performance.now()
  const r = await autocannon({ ...request, duration: seconds })
  const wallMs = performance.now() - t0
  const serverCpuMs = processCpuMs(pid) - serverCpu0
  const loopCpuMs = processCpuMs(pid, true) - loopCpu0
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
}

/**
 * The same load against node-oidc-provider (bench/oidc-provider-server.mjs):
 * client_credentials, client_secret_basic, EdDSA at+jwt access tokens, in its
 * own process. What the field's reference implementation does on this machine.
 */
export async function benchOidcProvider(seconds: number): Promise<IssuanceResult & { version: string }> {
  const port = await freePort()
  const secret = randomBytes(32).toString('base64url')
  const child = spawn(process.execPath, ['bench/oidc-provider-server.mjs', String(port), secret], { stdio: ['ignore', 'pipe', 'pipe'] })
  let stderr = ''
  child.stderr.on('data', (c: Buffer) => {
    stderr += c.toString()
  })
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`oidc-provider did not listen in 30 s: ${stderr}`)), 30_000)
      child.stdout.on('data', (c: Buffer) => {
        if (c.toString().includes('listening')) {
          clearTimeout(timer)
          resolve()
        }
      })
      child.once('exit', (code) => reject(new Error(`oidc-provider exited with ${code}: ${stderr}`)))
    })
    const basic = Buffer.from(`bench-client:${secret}`).toString('base64')
    const r = await measureTokenEndpoint(
      `http://127.0.0.1:${port}/token`,
      child.pid,
      basic,
      'grant_type=client_credentials&scope=payments%3Awrite%20crm%3Aread',
      seconds,
    )
    const { version } = JSON.parse(readFileSync(new URL('../node_modules/oidc-provider/package.json', import.meta.url), 'utf8')) as { version: string }
    return { ...r, version }
  } finally {
    child.kill('SIGTERM')
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
    return await measureTokenEndpoint(`${server.url}/oauth2/token`, server.child.pid, basic, 'grant_type=client_credentials', seconds)
  } finally {
    await server.stop()
  }
}
