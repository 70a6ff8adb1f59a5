/**
 * Token issuance over HTTP on loopback: `client_credentials` with a bootstrap
 * secret, audit on, embedded SQLite, 50 connections, against a control plane
 * in its own process. Compared with raw node:crypto Ed25519 signing and,
 * round by round, with node-oidc-provider under the same load.
 */
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import autocannon from 'autocannon'
import { adminCall, freePort, startServeProcess } from './server-process.js'
import { medianRound, processCpuMs, SIDE_BY_SIDE_ROUNDS, sideBySide, type Round } from './util.js'

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

/** A token endpoint under test, in its own process. */
interface TokenEndpoint {
  url: string
  pid: number | undefined
  /** Basic credentials of the client_credentials client. */
  basic: string
  body: string
  stop(): Promise<void>
}

/**
 * autocannon against a token endpoint (50 connections; 2 s warm-up unless
 * `warmUp` is false), with the server process's CPU over the measured run
 * read from /proc.
 */
async function measureTokenEndpoint(endpoint: TokenEndpoint, seconds: number, warmUp = true): Promise<IssuanceResult> {
  const { url, pid, basic, body } = endpoint
  const request = {
    url,
    method: 'POST' as const,
    connections: 50,
    headers: { authorization: `Basic ${basic}`, 'content-type': 'application/x-www-form-urlencoded' },
    body,
  }
  // Warm-up so JIT and caches settle before measuring.
  if (warmUp) await autocannon({ ...request, duration: 2 })
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
 * node-oidc-provider (bench/oidc-provider-server.mjs) in its own process:
 * client_credentials, client_secret_basic, EdDSA at+jwt access tokens. What
 * the field's reference implementation does on this machine.
 */
async function startOidcProvider(): Promise<TokenEndpoint & { version: string }> {
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
  } catch (err) {
    child.kill('SIGTERM')
    throw err
  }
  const { version } = JSON.parse(readFileSync(new URL('../node_modules/oidc-provider/package.json', import.meta.url), 'utf8')) as { version: string }
  return {
    url: `http://127.0.0.1:${port}/token`,
    pid: child.pid,
    basic: Buffer.from(`bench-client:${secret}`).toString('base64'),
    body: 'grant_type=client_credentials&scope=payments%3Awrite%20crm%3Aread',
    version,
    stop: async () => {
      child.kill('SIGTERM')
    },
  }
}

/** `aegis serve --role control-plane` (embedded SQLite, audit on) with one agent and a reusable bootstrap credential. */
async function startAegisIssuer(env: Record<string, string>): Promise<TokenEndpoint> {
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
    return {
      url: `${server.url}/oauth2/token`,
      pid: server.child.pid,
      basic: Buffer.from(`${cred.client_id}:${cred.client_secret}`).toString('base64'),
      body: 'grant_type=client_credentials',
      stop: () => server.stop(),
    }
  } catch (err) {
    await server.stop()
    throw err
  }
}

export interface IssuanceSideBySide {
  /** The median round's figures (by the ratio of tokens/s). */
  aegis: IssuanceResult
  oidc: IssuanceResult & { version: string }
  /** Every round, sorted by the ratio of tokens/s (Aegis / node-oidc-provider). */
  rounds: Array<Round<IssuanceResult>>
}

/**
 * Token issuance over HTTP on loopback: Aegis (`client_credentials` with a
 * bootstrap secret, audit on, embedded SQLite) and node-oidc-provider, both
 * running, under the same load (50 connections) in alternating rounds of
 * `seconds` each (see sideBySide).
 */
export async function benchIssuance(seconds: number, rounds = SIDE_BY_SIDE_ROUNDS, env: Record<string, string> = {}): Promise<IssuanceSideBySide> {
  const aegis = await startAegisIssuer(env)
  try {
    const oidc = await startOidcProvider()
    try {
      await measureTokenEndpoint(aegis, 2)
      await measureTokenEndpoint(oidc, 2)
      const measured = await sideBySide(
        rounds,
        [aegis.pid, oidc.pid],
        () => measureTokenEndpoint(aegis, seconds, false),
        () => measureTokenEndpoint(oidc, seconds, false),
        (a, o) => a.tokensPerSec / o.tokensPerSec,
      )
      const median = medianRound(measured)
      return { aegis: median.ours, oidc: { ...median.anchor, version: oidc.version }, rounds: measured }
    } finally {
      await oidc.stop()
    }
  } finally {
    await aegis.stop()
  }
}
