/**
 * Starts `aegis serve` in a child process (so the load generator doesn't share
 * its event loop) and waits until it answers.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
export { freePort } from '../test/helpers/ports.js'
import { freePort } from '../test/helpers/ports.js'
import { clientCredentialsToken } from '../test/helpers/admin-http.js'

export interface ServerProcess {
  child: ChildProcess
  url: string
  adminToken: string
  stop(): Promise<void>
}

/** BENCH_SERVER_NODE_ARGS (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof") for every aegis process a bench spawns: node refuses --cpu-prof in NODE_OPTIONS. */
export function serverNodeArgs(): string[] {
  return (process.env.BENCH_SERVER_NODE_ARGS ?? '').split(' ').filter((a) => a !== '')
}

export async function startServeProcess(
  role: 'control-plane' | 'gateway' | 'all',
  env: Record<string, string>,
  portVar: 'AEGIS_CONTROL_PORT' | 'AEGIS_GATEWAY_PORT' = 'AEGIS_CONTROL_PORT',
): Promise<ServerProcess> {
  const port = env[portVar] ? Number(env[portVar]) : await freePort()
  const adminToken = env.AEGIS_ADMIN_TOKEN ?? `bench_admin_${randomBytes(16).toString('hex')}`
  const ownDir = env.AEGIS_DATA_DIR === undefined
  const dataDir = env.AEGIS_DATA_DIR ?? mkdtempSync(join(tmpdir(), 'aegis-bench-'))
  const childEnv: Record<string, string> = {
    ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('AEGIS_')) as Array<[string, string]>),
    AEGIS_DATA_DIR: dataDir,
    AEGIS_KEK: env.AEGIS_KEK ?? randomBytes(32).toString('base64'),
    AEGIS_ADMIN_TOKEN: adminToken,
    AEGIS_LOG_LEVEL: 'warn',
    ...env,
    [portVar]: String(port),
  }
  const child = spawn(process.execPath, [...serverNodeArgs(), 'bin/aegis.js', 'serve', '--role', role], { env: childEnv, stdio: ['ignore', 'pipe', 'inherit'] })
  const url = `http://127.0.0.1:${port}`
  const deadline = Date.now() + 30_000
  for (;;) {
    if (child.exitCode !== null) throw new Error(`aegis serve exited with ${child.exitCode}`)
    try {
      const res = await fetch(`${url}/healthz`)
      if (res.ok) break
    } catch {
      /* not up yet */
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL')
      throw new Error('aegis serve did not come up in 30 s')
    }
    await new Promise((r) => setTimeout(r, 100))
  }
  return {
    child,
    url,
    adminToken,
    stop: async () => {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r))
        child.kill('SIGTERM')
        await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))])
        if (child.exitCode === null) child.kill('SIGKILL')
      }
      // A 10 s run leaves tens of MB of audit log behind; a directory the caller chose stays.
      if (ownDir) rmSync(dataDir, { recursive: true, force: true })
    },
  }
}

/** JSON admin call. */
export async function adminCall(url: string, token: string, method: string, path: string, body?: unknown): Promise<Record<string, unknown>> {
  const res = await fetch(url + path, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  const json = (await res.json()) as Record<string, unknown>
  if (!res.ok && res.status !== 409) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(json)}`)
  return json
}

/** Registers `tenant` and an agent allowed `crm.read` on a bench control plane; resolves with a token of that agent. */
export async function crmReaderToken(cp: ServerProcess, tenant: string, agent: string): Promise<string> {
  await adminCall(cp.url, cp.adminToken, 'POST', '/admin/v1/tenants', { id: tenant, name: 'Bench' })
  await adminCall(cp.url, cp.adminToken, 'POST', `/admin/v1/tenants/${tenant}/agents`, {
    agent_id: agent,
    scopes: ['crm:read'],
    capabilities: ['crm.read'],
    max_ttl_seconds: 900,
  })
  const cred = (await adminCall(cp.url, cp.adminToken, 'POST', `/admin/v1/tenants/${tenant}/agents/${agent}/bootstrap-credentials`, {
    ttl_seconds: 3600,
    single_use: false,
  })) as { client_id: string; client_secret: string }
  return clientCredentialsToken(cp.url, cred)
}

/**
 * A stand-in for a control plane on other machines, for a gateway's
 * `decisionLog.url`: reads and acknowledges each decision batch (202), stores
 * nothing, so the log's upload costs the gateway what it would, and its
 * ingest costs this machine nothing.
 */
export async function startDecisionSink(): Promise<{ url: string; close(): Promise<void> }> {
  const sink = createServer((req, res) => {
    req.resume()
    req.on('end', () => {
      res.writeHead(202, { 'content-type': 'application/json' })
      res.end('{}')
    })
  })
  await new Promise<void>((r) => sink.listen(0, '127.0.0.1', r))
  return {
    url: `http://127.0.0.1:${(sink.address() as AddressInfo).port}`,
    close: async () => {
      sink.closeAllConnections()
      await new Promise((r) => sink.close(r))
    },
  }
}
