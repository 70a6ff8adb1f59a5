/**
 * Gateway benchmarks (issue 3 goals), each beside the raw node:crypto
 * Ed25519 verify rate measured in the same run:
 * - the in-process decision pipeline (verify + deny list + strict policy +
 *   metrics + audit sink) with tokens not seen before (goal ≥ 80 % of raw
 *   verify) and with reused tokens (goal ≥ 10× raw verify);
 * - HTTP `POST /v1/authorize` with a reused token, 50 connections, against a
 *   gateway in its own process (goal ≥ 12,000/s, p99 < 5 ms);
 * - revocation propagation p50/p99 from the admin API call until three
 *   gateway processes all refuse the token, over Redis and over SSE
 *   (goal p99 < 100 ms on Redis).
 */
import { generateKeyPairSync, randomBytes, sign, verify } from 'node:crypto'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import autocannon from 'autocannon'
import { decodeJwt } from 'jose'
import { loadConfig } from '../src/config/load.js'
import { buildManifest, capabilityHash } from '../src/lib/capability.js'
import { silentLogger } from '../src/observability/logger.js'
import { StrictEngine } from '../src/policy/strict.js'
import type { Revocation } from '../src/store/types.js'
import { createVerifier } from '../src/verify/index.js'
import { authorize, startGatewayEnv, type GatewayEnv } from '../test/helpers/gateway-env.js'
import { startGatewayProcess, type GatewayProcess } from '../test/helpers/gateway-processes.js'
import { REDIS_URL, skipWithoutRedis } from '../test/helpers/services.js'
import { inProcessPipeline, serveJwks } from './in-process-pipeline.js'
import { pacedLoad, type PacedLoadResult } from './paced-load.js'
import { crmReaderToken, freePort, startDecisionSink, startServeProcess, type ServerProcess } from './server-process.js'
import { b64, medianRound, opsPerSec, percentiles, processTreeCpuMs, quiet, SIDE_BY_SIDE_ROUNDS, sideBySide, type Round } from './util.js'

const ISSUER = 'https://aegis.bench'
const AUDIENCE = 'aegis-gateway'
const TENANT = 'acme'
const AGENT = 'billing-bot'

export interface HttpFigures {
  perSec: number
  /** Length of the measured run, s. */
  seconds: number
  p50Ms: number
  p99Ms: number
  errors: number
  non2xx: number
  /** Server CPU (its process and any workers) per answered request, µs; NaN without /proc. */
  serverCpuUs: number
  /** The load generator's (this process's) CPU over the run, % of one core. */
  loadGenCpuPct: number
}

/**
 * autocannon at full speed (closed loop) against `url` for `seconds`, after a
 * 2 s warm-up (unless `warmUp` is false), with the server's CPU (process `pid` and its children) per
 * request and the load generator's own CPU over the same run.
 */
async function fullSpeed(opts: autocannon.Options, pid: number | undefined, seconds: number, warmUp = true): Promise<HttpFigures> {
  if (warmUp) await autocannon({ ...opts, duration: 2 })
  const cpu0 = processTreeCpuMs(pid)
  const gen0 = process.cpuUsage()
  const t0 = performance.now()
  const r = await autocannon({ ...opts, duration: seconds })
  const wallMs = performance.now() - t0
  const gen = process.cpuUsage(gen0)
  return {
    perSec: r.requests.average,
    seconds,
    p50Ms: r.latency.p50,
    p99Ms: r.latency.p99,
    errors: r.errors,
    non2xx: r.non2xx,
    serverCpuUs: r.requests.total > 0 ? (1000 * (processTreeCpuMs(pid) - cpu0)) / r.requests.total : NaN,
    loadGenCpuPct: (100 * (gen.user + gen.system)) / 1000 / wallMs,
  }
}

export interface HttpBench {
  /** Full speed: the median round's figures (by the ratio of requests/s). */
  max: HttpFigures
  atGoalRate: PacedLoadResult
  /** The same two loads against bench/bare-fastify.mjs (full speed: the median round's). */
  bare: { max: HttpFigures; atGoalRate: PacedLoadResult }
  /** Every full-speed round, sorted by the ratio of requests/s (Aegis / bare fastify). */
  rounds: Array<Round<HttpFigures>>
  /**
   * The same full-speed rounds against a second gateway whose decision log
   * goes to a stand-in (startDecisionSink), as to a control plane on other
   * machines: what the gateway costs without the control plane's ingest on
   * these cores.
   */
  remoteLog: { max: HttpFigures; bare: HttpFigures; rounds: Array<Round<HttpFigures>> }
}

/** bench/bare-fastify.mjs in its own process: its URL, pid and how to stop it. */
async function startBareFastify(): Promise<{ url: string; pid: number | undefined; stop(): void }> {
  const child = spawn(process.execPath, [fileURLToPath(new URL('./bare-fastify.mjs', import.meta.url))], { stdio: ['ignore', 'pipe', 'inherit'] })
  try {
    const port = await new Promise<string>((resolve, reject) => {
      child.stdout.once('data', (d: Buffer) => resolve(d.toString().trim()))
      child.once('exit', (code) => reject(new Error(`bare fastify exited with ${code}`)))
    })
    return { url: `http://127.0.0.1:${port}`, pid: child.pid, stop: () => child.kill('SIGTERM') }
  } catch (err) {
    child.kill('SIGTERM')
    throw err
  }
}

export interface GatewayBenchResult {
  rawVerifyPerSec: number
  /** The Ed25519 implementation the default verifier picked. */
  backend: string
  pipelineFreshPerSec: number
  /** Same, with the verifier forced onto node:crypto (the baseline's own implementation). */
  pipelineFreshNodeCrypto: { freshPerSec: number; rawVerifyPerSec: number }
  pipelineReusedPerSec: number
  http: HttpBench
  propagation: { redis: { p50Ms: number; p99Ms: number; samples: number } | null; sse: { p50Ms: number; p99Ms: number; samples: number } }
}

/** The pipeline in process, with a real verifier (JWKS over loopback), deny list, strict policy. */
export async function benchPipeline(
  seconds: number,
  ed25519: 'auto' | 'node:crypto' = 'auto',
): Promise<{ rawVerifyPerSec: number; freshPerSec: number; reusedPerSec: number; backend: string }> {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519')
  const kid = 'bench-1'
  const jwks = await serveJwks(publicKey, kid, 'max-age=300')
  const config = loadConfig({ env: {}, overrides: { issuer: ISSUER, audience: AUDIENCE, logLevel: 'silent' } })
  const verifier = createVerifier({
    issuer: ISSUER,
    audience: AUDIENCE,
    jwksUrl: jwks.url,
    cacheSize: config.gateway.verifiedCacheSize,
    ed25519,
  })
  const logger = silentLogger()
  const manifest = buildManifest(['payments.transfer', 'crm.read'])
  const hash = capabilityHash(manifest)
  const now = Date.now()
  // A realistic deny list: a thousand live entries of each kind the lookups touch.
  const entries: Revocation[] = []
  for (let i = 0; i < 1000; i++)
    entries.push({
      seq: i + 1,
      type: 'jti',
      value: randomBytes(16).toString('base64url'),
      tenant: TENANT,
      agentId: null,
      reason: null,
      createdAt: now,
      expiresAt: now + 600_000,
    })
  const { pipeline } = await inProcessPipeline({
    config,
    logger,
    verifier,
    compiler: { compile: () => new StrictEngine() },
    snapshot: { seq: 1000, revocations: entries, agents: [{ tenant: TENANT, agentId: AGENT, capabilityHash: hash }], policies: [] },
    manifest,
    hash,
  })
  try {
    await verifier.jwks.ready
    const header = b64({ alg: 'EdDSA', typ: 'at+jwt', kid })
    const iat = Math.floor(Date.now() / 1000)
    const mint = (): string => {
      const payload = b64({
        iss: ISSUER,
        sub: AGENT,
        agent_id: AGENT,
        client_id: 'cl_bench',
        tenant: TENANT,
        aud: AUDIENCE,
        scope: 'payments:write crm:read',
        iat,
        nbf: iat,
        exp: iat + 600,
        jti: randomBytes(16).toString('base64url'),
        policy_version: 'none',
        capability_hash: hash,
      })
      const input = `${header}.${payload}`
      return `${input}.${sign(null, Buffer.from(input), privateKey).toString('base64url')}`
    }
    const request = (token: string) => ({
      token,
      tool: 'crm.read',
      params: {},
      resource: null,
      dryRun: false,
      override: null,
      clientAddress: '127.0.0.1',
      mode: 'authorize' as const,
    })
    const check = (token: string): void => {
      const o = pipeline.decide(request(token))
      if (o instanceof Promise || o.decision !== 'allow') throw new Error('pipeline did not allow synchronously')
    }
    const key = verifier.jwks.getKey(kid)!.key
    const split = (t: string): [Buffer, Buffer] => [Buffer.from(t.slice(0, t.lastIndexOf('.'))), Buffer.from(t.slice(t.lastIndexOf('.') + 1), 'base64url')]
    const sample = split(mint())
    const estimate = opsPerSec(0.2, () => verify(null, sample[0], key, sample[1]))
    const pool = Array.from({ length: Math.ceil(estimate * seconds * 1.5) + 512 }, mint)
    const parts = pool.map(split)
    for (let i = 0; i < 200; i++) check(mint())
    // Raw verify and the pipeline alternate in small rounds over the same tokens, so other load falls on both alike.
    let rawMs = 0
    let freshMs = 0
    let n = 0
    const ROUND = 256
    while (n + ROUND <= pool.length && rawMs + freshMs < seconds * 2000) {
      let t0 = performance.now()
      for (let i = n; i < n + ROUND; i++) {
        const [input, sig] = parts[i]!
        if (!verify(null, input, key, sig)) throw new Error('raw verify failed')
      }
      rawMs += performance.now() - t0
      t0 = performance.now()
      for (let i = n; i < n + ROUND; i++) check(pool[i]!)
      freshMs += performance.now() - t0
      n += ROUND
    }
    const reused = pool.slice(0, 64).map(request)
    let k = 0
    // The reused path never reaches the signature check, so it is measured once (with the default backend).
    const reusedPerSec =
      ed25519 !== 'auto'
        ? NaN
        : opsPerSec(seconds, () => {
            const o = pipeline.decide(reused[k++ & 63]!)
            if (o instanceof Promise) throw new Error('async on the reused path')
          })
    return { rawVerifyPerSec: n / (rawMs / 1000), freshPerSec: n / (freshMs / 1000), reusedPerSec, backend: verifier.ed25519Backend }
  } finally {
    verifier.close()
    await jwks.close()
  }
}

function gatewayProcessConfig(env: GatewayEnv, i: number, redis: boolean): Record<string, unknown> {
  return {
    issuer: env.issuer,
    gatewayToken: env.gatewayToken,
    logLevel: 'warn',
    ...(redis ? { redisUrl: REDIS_URL } : {}),
    gateway: { id: `bench-gw-${i}-${env.tenant}` },
  }
}

/**
 * HTTP /v1/authorize with a reused token, 50 connections, against `aegis
 * serve --role gateway` following `aegis serve --role control-plane`, each in
 * its own process, so nothing but the load generator runs on this event loop
 * (its latency figures include any stall of this loop), and bare fastify
 * beside it. Measured twice: at full speed with autocannon (closed loop:
 * each connection sends when the previous answer came, so latency there is
 * queueing at saturation) in alternating rounds with bare fastify, and at
 * the goal rate of 12,000/s offered open-loop (see paced-load.ts), latency
 * counted from when each request was due.
 */
export async function benchHttp(seconds: number, goalRate = 12_000): Promise<HttpBench> {
  const roundSeconds = Math.max(5, seconds / 2)
  const gatewayToken = `gw_${randomBytes(32).toString('base64url')}`
  const cpPort = await freePort()
  const issuer = `http://127.0.0.1:${cpPort}`
  const cp = await startServeProcess('control-plane', { AEGIS_GATEWAY_TOKEN: gatewayToken, AEGIS_CONTROL_PORT: String(cpPort), AEGIS_ISSUER: issuer })
  let gw: ServerProcess | undefined
  try {
    const token = await crmReaderToken(cp, TENANT, AGENT)
    gw = await startServeProcess('gateway', { AEGIS_GATEWAY_TOKEN: gatewayToken, AEGIS_ISSUER: issuer }, 'AEGIS_GATEWAY_PORT')
    const request = {
      method: 'POST' as const,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ action: { tool: 'crm.read', params: { q: 'acme' } }, resource: 'crm:contacts' }),
    }
    const bare = await startBareFastify()
    try {
      const aegisLoad = { url: `${gw.url}/v1/authorize`, connections: 50, ...request }
      const bareLoad = { url: `${bare.url}/v1/authorize`, connections: 50, ...request }
      const gwPid = gw.child.pid
      await fullSpeed(aegisLoad, gwPid, 2, false)
      await fullSpeed(bareLoad, bare.pid, 2, false)
      const againstBare = (load: typeof aegisLoad, pid: number | undefined): Promise<Array<Round<HttpFigures>>> =>
        sideBySide(
          SIDE_BY_SIDE_ROUNDS,
          [cp.child.pid, pid, bare.pid],
          () => fullSpeed(load, pid, roundSeconds, false),
          () => fullSpeed(bareLoad, bare.pid, roundSeconds, false),
          (a, b) => a.perSec / b.perSec,
        )
      // Full speed, side by side in alternating rounds; then the open-loop load at the goal rate, once each.
      const rounds = await againstBare(aegisLoad, gwPid)
      const median = medianRound(rounds)
      await quiet([cp.child.pid, gwPid, bare.pid])
      const atGoalRate = await pacedLoad({ ...aegisLoad, rate: goalRate, seconds })
      await quiet([cp.child.pid, gwPid, bare.pid])
      const bareAtGoalRate = await pacedLoad({ ...bareLoad, rate: goalRate, seconds })
      await gw.stop()
      gw = undefined
      const sink = await startDecisionSink()
      try {
        gw = await startServeProcess(
          'gateway',
          { AEGIS_GATEWAY_TOKEN: gatewayToken, AEGIS_ISSUER: issuer, AEGIS_DECISION_LOG_URL: sink.url },
          'AEGIS_GATEWAY_PORT',
        )
        const remoteLoad = { ...aegisLoad, url: `${gw.url}/v1/authorize` }
        const remotePid = gw.child.pid
        await fullSpeed(remoteLoad, remotePid, 2, false)
        const remoteRounds = await againstBare(remoteLoad, remotePid)
        const remoteMedian = medianRound(remoteRounds)
        return {
          max: median.ours,
          atGoalRate,
          bare: { max: median.anchor, atGoalRate: bareAtGoalRate },
          rounds,
          remoteLog: { max: remoteMedian.ours, bare: remoteMedian.anchor, rounds: remoteRounds },
        }
      } finally {
        await gw?.stop()
        gw = undefined
        await sink.close()
      }
    } finally {
      bare.stop()
    }
  } finally {
    await gw?.stop()
    await cp.stop()
  }
}

/**
 * `/v1/authorize` at full speed against `aegis serve --role gateway
 * --workers N` for each N in `counts` (Redis for the replay cache and feed,
 * as several workers require), the same reused token and load as benchHttp.
 * On a 2-core machine the load generator competes with the workers for the
 * cores: its own CPU is reported beside each figure.
 */
export async function benchWorkers(seconds: number, counts: number[]): Promise<Array<{ workers: number; figures: HttpFigures }> | null> {
  if (await skipWithoutRedis()) return null
  const gatewayToken = `gw_${randomBytes(32).toString('base64url')}`
  const cpPort = await freePort()
  const issuer = `http://127.0.0.1:${cpPort}`
  const redis = { AEGIS_REDIS_URL: REDIS_URL }
  const cp = await startServeProcess('control-plane', { ...redis, AEGIS_GATEWAY_TOKEN: gatewayToken, AEGIS_CONTROL_PORT: String(cpPort), AEGIS_ISSUER: issuer })
  const out: Array<{ workers: number; figures: HttpFigures }> = []
  try {
    const token = await crmReaderToken(cp, TENANT, AGENT)
    for (const workers of counts) {
      const gw = await startServeProcess(
        'gateway',
        { ...redis, AEGIS_GATEWAY_TOKEN: gatewayToken, AEGIS_ISSUER: issuer, AEGIS_GATEWAY_WORKERS: String(workers) },
        'AEGIS_GATEWAY_PORT',
      )
      try {
        // /healthz answered by one worker: give the others their start-up before the warm-up begins.
        await new Promise((r) => setTimeout(r, 1_000 * workers))
        const opts = {
          url: `${gw.url}/v1/authorize`,
          connections: 50,
          method: 'POST' as const,
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          body: JSON.stringify({ action: { tool: 'crm.read', params: { q: 'acme' } }, resource: 'crm:contacts' }),
        }
        out.push({ workers, figures: await fullSpeed(opts, gw.child.pid, seconds) })
      } finally {
        await gw.stop()
      }
    }
    return out
  } finally {
    await cp.stop()
  }
}

/** Revocation propagation across three gateway processes: admin call → every gateway refuses. */
export async function benchPropagation(redis: boolean, samples: number): Promise<{ p50Ms: number; p99Ms: number; samples: number }> {
  const env = await startGatewayEnv({ redis })
  const gateways: GatewayProcess[] = []
  try {
    const cred = await env.agent(AGENT, ['crm.read'])
    for (let i = 1; i <= 3; i++) gateways.push(await startGatewayProcess(gatewayProcessConfig(env, i, redis), env.tuning()))
    const call = { action: { tool: 'crm.read' } }
    const times: number[] = []
    for (let s = 0; s < samples; s++) {
      const token = await env.token(cred)
      for (const g of gateways) if ((await authorize(g.url, token, call)).status !== 200) throw new Error('token refused before revocation')
      const start = performance.now()
      const post = env.admin('POST', '/revocations', { type: 'jti', value: decodeJwt(token).jti, tenant: env.tenant })
      const each = await Promise.all(
        gateways.map(async (g) => {
          for (;;) {
            if ((await authorize(g.url, token, call)).status === 401) return performance.now() - start
            if (performance.now() - start > 10_000) throw new Error('revocation did not propagate in 10 s')
            // The control plane shares this process: a 1 ms pause between polls leaves it the CPU to publish.
            await new Promise((r) => setTimeout(r, 1))
          }
        }),
      )
      await post
      times.push(Math.max(...each))
    }
    const p = percentiles(times)
    return { p50Ms: p.p50, p99Ms: p.p99, samples }
  } finally {
    await Promise.all(gateways.map((g) => g.stop()))
    await env.close()
  }
}

export async function benchGateway(seconds: number): Promise<GatewayBenchResult> {
  const pipeline = await benchPipeline(seconds)
  const nodeCrypto = await benchPipeline(seconds, 'node:crypto')
  const http = await benchHttp(seconds)
  const samples = Math.max(20, Math.min(200, seconds * 20))
  const redis = (await skipWithoutRedis()) === false ? await benchPropagation(true, samples) : null
  const sse = await benchPropagation(false, samples)
  return {
    rawVerifyPerSec: pipeline.rawVerifyPerSec,
    backend: pipeline.backend,
    pipelineFreshPerSec: pipeline.freshPerSec,
    pipelineFreshNodeCrypto: { freshPerSec: nodeCrypto.freshPerSec, rawVerifyPerSec: nodeCrypto.rawVerifyPerSec },
    pipelineReusedPerSec: pipeline.reusedPerSec,
    http,
    propagation: { redis, sse },
  }
}

/** Human-readable lines for the bench report. */
export function formatGatewayBench(r: GatewayBenchResult): string[] {
  const x = (v: number): string => `${(v / r.rawVerifyPerSec).toFixed(2)}× raw verify`
  const lines = [
    `raw node:crypto Ed25519 verify: ${r.rawVerifyPerSec.toFixed(0)}/s`,
    `pipeline in process, new token each call (${r.backend}): ${r.pipelineFreshPerSec.toFixed(0)}/s (${x(r.pipelineFreshPerSec)}; goal ≥ 0.80×)`,
    `pipeline in process, reused tokens: ${r.pipelineReusedPerSec.toFixed(0)}/s (${x(r.pipelineReusedPerSec)}; goal ≥ 10×)`,
    `pipeline in process, new token each call, Ed25519 by node:crypto: ${r.pipelineFreshNodeCrypto.freshPerSec.toFixed(0)}/s ` +
      `(${(r.pipelineFreshNodeCrypto.freshPerSec / r.pipelineFreshNodeCrypto.rawVerifyPerSec).toFixed(2)}× raw verify)`,
    `HTTP /v1/authorize, reused token, 50 connections, full speed: ${r.http.max.perSec.toFixed(0)}/s (${x(r.http.max.perSec)}), ` +
      `p50 ${r.http.max.p50Ms} ms, p99 ${r.http.max.p99Ms} ms, errors ${r.http.max.errors}, non-2xx ${r.http.max.non2xx} (goal ≥ 12,000/s)`,
    `HTTP /v1/authorize, reused token, 50 connections, ${r.http.atGoalRate.offered}/s offered: ${r.http.atGoalRate.perSec.toFixed(0)}/s, ` +
      `p50 ${r.http.atGoalRate.p50Ms.toFixed(2)} ms, p99 ${r.http.atGoalRate.p99Ms.toFixed(2)} ms, errors ${r.http.atGoalRate.errors}, ` +
      `non-2xx ${r.http.atGoalRate.non2xx} (goal p99 < 5 ms)`,
    `bare fastify under the same loads: ${r.http.bare.max.perSec.toFixed(0)}/s at full speed (p99 ${r.http.bare.max.p99Ms} ms); ` +
      `p99 ${r.http.bare.atGoalRate.p99Ms.toFixed(2)} ms at ${r.http.bare.atGoalRate.offered}/s`,
  ]
  if (r.propagation.redis)
    lines.push(
      `revocation propagation, 3 gateways, Redis: p50 ${r.propagation.redis.p50Ms.toFixed(1)} ms, p99 ${r.propagation.redis.p99Ms.toFixed(1)} ms ` +
        `(${r.propagation.redis.samples} revocations; goal p99 < 100 ms)`,
    )
  lines.push(
    `revocation propagation, 3 gateways, SSE: p50 ${r.propagation.sse.p50Ms.toFixed(1)} ms, p99 ${r.propagation.sse.p99Ms.toFixed(1)} ms ` +
      `(${r.propagation.sse.samples} revocations)`,
  )
  return lines
}

// `node --import tsx bench/gateway.ts [seconds]` runs it alone.
if (import.meta.url === `file://${process.argv[1]}`) {
  const r = await benchGateway(Number(process.argv[2] ?? 3))
  for (const line of formatGatewayBench(r)) console.log(line)
}
