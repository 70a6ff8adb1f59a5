/**
 * Issue 14 figures:
 * - emergency rotation → new key accepted at every gateway: from the answer
 *   of `POST /admin/v1/keys/rotate?emergency=true` until three gateway
 *   processes all allow a token signed with the new key (Redis and SSE),
 *   beside revocation propagation (bench/gateway.ts);
 * - gateway start → first accepted token, with 0, 10,000 and 100,000 jti
 *   revocations (and as many agents) in force: from spawning
 *   `aegis serve --role gateway` until it allows a valid token, following
 *   `aegis serve --role control-plane` on SQLite (median of three starts).
 */
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { decodeProtectedHeader } from 'jose'
import { fillFeedState } from '../test/helpers/bulk-feed.js'
import { authorize, startGatewayEnv } from '../test/helpers/gateway-env.js'
import { startGatewayProcess, type GatewayProcess } from '../test/helpers/gateway-processes.js'
import { REDIS_URL, skipWithoutRedis } from '../test/helpers/services.js'
import { crmReaderToken, freePort, serverNodeArgs, startServeProcess } from './server-process.js'
import { percentiles } from './util.js'

const CALL = { action: { tool: 'crm.read' } }

/** Emergency rotation until three gateway processes accept the new key; `samples` rotations. */
export async function benchEmergencyRotation(redis: boolean, samples: number): Promise<{ p50Ms: number; p99Ms: number; samples: number }> {
  const env = await startGatewayEnv({ redis })
  const gateways: GatewayProcess[] = []
  try {
    const cred = await env.agent('rotation-bot', ['crm.read'])
    for (let i = 1; i <= 3; i++) {
      gateways.push(
        await startGatewayProcess(
          {
            issuer: env.issuer,
            gatewayToken: env.gatewayToken,
            logLevel: 'warn',
            ...(redis ? { redisUrl: REDIS_URL } : {}),
            gateway: { id: `bench-rot-${i}-${env.tenant}` },
          },
          env.tuning(),
        ),
      )
    }
    const warm = await env.token(cred)
    for (const g of gateways) if ((await authorize(g.url, warm, CALL)).status !== 200) throw new Error('token refused before rotation')
    const times: number[] = []
    for (let s = 0; s < samples; s++) {
      const r = await env.admin('POST', '/keys/rotate?emergency=true')
      const answered = performance.now()
      const token = await env.token(cred)
      if (decodeProtectedHeader(token).kid !== r.current) throw new Error('token not signed with the new key')
      const each = await Promise.all(
        gateways.map(async (g) => {
          for (;;) {
            if ((await authorize(g.url, token, CALL)).status === 200) return performance.now() - answered
            if (performance.now() - answered > 30_000) throw new Error('new key not accepted in 30 s')
            await new Promise((res) => setTimeout(res, 1))
          }
        }),
      )
      times.push(Math.max(...each))
    }
    const p = percentiles(times)
    return { p50Ms: p.p50, p99Ms: p.p99, samples }
  } finally {
    await Promise.all(gateways.map((g) => g.stop()))
    await env.close()
  }
}

/** Spawns `aegis serve --role gateway` and resolves with the ms until it allows `token`. */
async function timeGatewayStart(env: Record<string, string>, token: string): Promise<number> {
  const port = await freePort()
  const url = `http://127.0.0.1:${port}`
  const childEnv: Record<string, string> = {
    ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('AEGIS_')) as Array<[string, string]>),
    AEGIS_LOG_LEVEL: 'warn',
    // The time of one gateway process; workers would add their own start-up.
    AEGIS_GATEWAY_WORKERS: '1',
    ...env,
    AEGIS_GATEWAY_PORT: String(port),
  }
  const started = performance.now()
  const child = spawn(process.execPath, [...serverNodeArgs(), 'bin/aegis.js', 'serve', '--role', 'gateway'], {
    env: childEnv,
    stdio: ['ignore', 'ignore', 'inherit'],
  })
  try {
    for (;;) {
      if (child.exitCode !== null) throw new Error(`gateway exited with ${child.exitCode}`)
      try {
        if ((await authorize(url, token, CALL)).status === 200) return performance.now() - started
      } catch {
        /* not listening yet */
      }
      if (performance.now() - started > 120_000) throw new Error('gateway did not accept the token in 120 s')
      await new Promise((r) => setTimeout(r, 5))
    }
  } finally {
    const exited = new Promise((r) => child.once('exit', r))
    child.kill('SIGTERM')
    await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))])
    if (child.exitCode === null) child.kill('SIGKILL')
  }
}

export interface StartupFigure {
  revocations: number
  sse: number
  redis: number | null
}

/**
 * Gateway start → first accepted token at each size (revocations and as
 * many agents in force), over SSE and, when Redis answers, over Redis;
 * median of `runs` starts each.
 */
export async function benchGatewayStartup(sizes: number[] = [0, 10_000, 100_000], runs = 3): Promise<StartupFigure[]> {
  const out: StartupFigure[] = []
  const withRedis = (await skipWithoutRedis()) === false
  for (const n of sizes) {
    const gatewayToken = `gw_${randomBytes(32).toString('base64url')}`
    const cpPort = await freePort()
    const issuer = `http://127.0.0.1:${cpPort}`
    const dataDir = mkdtempSync(join(tmpdir(), 'aegis-bench-start-'))
    const cp = await startServeProcess('control-plane', {
      AEGIS_DATA_DIR: dataDir,
      AEGIS_GATEWAY_TOKEN: gatewayToken,
      AEGIS_CONTROL_PORT: String(cpPort),
      AEGIS_ISSUER: issuer,
      AEGIS_RATE_LIMIT_PER_CLIENT: '1000000',
      AEGIS_RATE_LIMIT_PER_IP: '10000000',
    })
    try {
      const token = await crmReaderToken(cp, 'acme', 'start-bot')
      if (n > 0) fillFeedState({ dataDir, tenant: 'acme', revocations: n, agents: n, prefix: `b${n}` })
      const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
      const base = { AEGIS_GATEWAY_TOKEN: gatewayToken, AEGIS_ISSUER: issuer }
      const sse: number[] = []
      for (let i = 0; i < runs; i++) sse.push(await timeGatewayStart(base, token))
      let redis: number | null = null
      if (withRedis) {
        // The control plane above publishes in-process (no AEGIS_REDIS_URL): a Redis gateway still loads the snapshot from it, over HTTP.
        const r: number[] = []
        for (let i = 0; i < runs; i++) r.push(await timeGatewayStart({ ...base, AEGIS_REDIS_URL: REDIS_URL }, token))
        redis = median(r)
      }
      out.push({ revocations: n, sse: median(sse), redis })
    } finally {
      await cp.stop()
      rmSync(dataDir, { recursive: true, force: true })
    }
  }
  return out
}
