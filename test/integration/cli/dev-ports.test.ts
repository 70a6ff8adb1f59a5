/**
 * `aegis dev` and `aegis serve --role all` on ports other than the defaults:
 * the issuer, the tokens' `iss` and the metadata name the port the control
 * plane listens on, the gateway of the same process talks to that control
 * plane whatever the issuer says, and a port in use names the setting to change.
 */
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { decodeJwt } from 'jose'
import { startRoles } from '../../../src/cli/run-roles.js'
import { loadConfig } from '../../../src/config/load.js'
import { freePort } from '../../helpers/ports.js'

const ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../..')
const dirs: string[] = []
const children: ChildProcess[] = []
after(async () => {
  for (const c of children) {
    if (c.exitCode === null && c.signalCode === null) {
      const done = new Promise((r) => c.once('exit', r))
      c.kill('SIGTERM')
      await done
    }
  }
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'aegis-dev-ports-'))
  dirs.push(d)
  return d
}

async function until<T>(get: () => Promise<T | undefined> | T | undefined, what: string, limitMs = 60_000): Promise<T> {
  const start = Date.now()
  for (;;) {
    const v = await get()
    if (v !== undefined) return v
    if (Date.now() - start > limitMs) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

test('aegis dev on other ports: issuer, iss, metadata and the gateway all follow the port the control plane listens on', async () => {
  const cpPort = await freePort()
  const gwPort = await freePort()
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', '-e', "import('./src/cli/main.ts').then((m) => m.main(['dev'])).then((c) => { process.exitCode = c })"],
    {
      cwd: ROOT,
      env: {
        PATH: process.env.PATH ?? '',
        HOME: process.env.HOME ?? '',
        AEGIS_DATA_DIR: join(tempDir(), 'data'),
        AEGIS_CONTROL_PORT: String(cpPort),
        AEGIS_GATEWAY_PORT: String(gwPort),
        AEGIS_LOG_LEVEL: 'warn',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  )
  children.push(child)
  let out = ''
  let err = ''
  child.stdout!.on('data', (b: Buffer) => {
    out += b.toString('utf8')
  })
  child.stderr!.on('data', (b: Buffer) => {
    err += b.toString('utf8')
  })
  const banner = await until(() => {
    if (child.exitCode !== null) throw new Error(`aegis dev exited ${child.exitCode}\n${out}\n${err}`)
    return out.includes('Ctrl-C stops it cleanly') ? out : undefined
  }, 'the aegis dev banner')
  const issuer = `http://127.0.0.1:${cpPort}`
  assert.match(banner, new RegExp(`\\(issuer ${issuer.replace(/[.:/]/g, '\\$&')}\\)`))
  assert.doesNotMatch(banner, /7400/)

  const meta = (await (await fetch(`${issuer}/.well-known/oauth-authorization-server`)).json()) as Record<string, string>
  assert.equal(meta.issuer, issuer)
  assert.equal(meta.token_endpoint, `${issuer}/oauth2/token`)
  assert.equal(meta.jwks_uri, `${issuer}/.well-known/jwks.json`)

  const clientId = /client_id\s+(\S+)/.exec(banner)![1]!
  const clientSecret = /client_secret\s+(\S+)/.exec(banner)![1]!
  const tokenRes = await fetch(`${issuer}/oauth2/token`, {
    method: 'POST',
    headers: { authorization: `Basic ${Buffer.from(`${clientId}:${clientSecret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
    body: 'grant_type=client_credentials',
  })
  assert.equal(tokenRes.status, 200)
  const token = ((await tokenRes.json()) as { access_token: string }).access_token
  assert.equal(decodeJwt(token).iss, issuer)

  // The gateway loaded this control plane's keys: the token is verified and decided.
  const decision = await until(async () => {
    const r = await fetch(`http://127.0.0.1:${gwPort}/v1/authorize`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ action: { tool: 'crm.read', params: { id: '42' } } }),
    })
    return r.status === 200 ? ((await r.json()) as { decision: string }) : undefined
  }, 'a decision from the dev gateway')
  assert.equal(decision.decision, 'allow')
})

function allConfig(dataDir: string, overrides: Record<string, unknown>) {
  return loadConfig({
    env: {},
    overrides: {
      dataDir,
      kek: randomBytes(32).toString('hex'),
      logLevel: 'silent',
      adminToken: `adm_${randomBytes(24).toString('base64url')}`,
      gatewayToken: `gw_${randomBytes(24).toString('base64url')}`,
      ...overrides,
    },
  })
}

test('the gateway of an all process talks to its own control plane even when the issuer names another address', async () => {
  const cpPort = await freePort()
  const elsewhere = await freePort() // nothing listens there
  const config = allConfig(tempDir(), {
    issuer: `http://127.0.0.1:${elsewhere}`,
    control: { host: '127.0.0.1', port: cpPort },
    gateway: { host: '127.0.0.1', port: 0 },
  })
  const running = await startRoles(config, 'all')
  try {
    const health = await until(
      async () => {
        const r = await fetch(`${running.gateway!.url}/healthz`)
        return r.status === 200 ? r.status : undefined
      },
      "the gateway to load its control plane's keys and feed",
      30_000,
    )
    assert.equal(health, 200)
  } finally {
    await running.close()
  }
})

test('a port in use names the setting to change', async () => {
  const busy = createServer()
  await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r))
  const port = (busy.address() as { port: number }).port
  try {
    const cpPort = await freePort()
    await assert.rejects(startRoles(allConfig(tempDir(), { control: { host: '127.0.0.1', port } }), 'control-plane'), (e: Error) => {
      assert.match(e.message, new RegExp(`127\\.0\\.0\\.1:${port} is already in use \\(EADDRINUSE\\): set AEGIS_CONTROL_PORT \\(control\\.port\\)`))
      return true
    })
    await assert.rejects(
      startRoles(allConfig(tempDir(), { control: { host: '127.0.0.1', port: cpPort }, gateway: { host: '127.0.0.1', port } }), 'all'),
      /set AEGIS_GATEWAY_PORT \(gateway\.port\) to a free port/,
    )
  } finally {
    await new Promise((r) => busy.close(r))
  }
})
