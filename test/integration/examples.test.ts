/**
 * The examples, run as their own processes the way a user runs them, against
 * `aegis dev` (spawned with its own data dir and ports): first with no policy
 * (the agent's capabilities decide), then with a Cedar policy that puts the
 * transfer behind a finance approval, approved while the example waits.
 */
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { AegisClient } from '../../src/sdk/index.js'
import { freePort } from './sdk/helpers/roles.js'

const ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '../..')
const children: ChildProcess[] = []
const dirs: string[] = []

after(async () => {
  await Promise.all(children.map(stop))
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})

interface Running {
  child: ChildProcess
  out: () => string
  err: () => string
  exited: Promise<number | null>
}

function run(args: string[], env: Record<string, string>): Running {
  const child = spawn(process.execPath, ['--import', 'tsx', ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  children.push(child)
  let out = ''
  let err = ''
  child.stdout!.on('data', (b: Buffer) => {
    out += b.toString('utf8')
  })
  child.stderr!.on('data', (b: Buffer) => {
    err += b.toString('utf8')
  })
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)))
  return { child, out: () => out, err: () => err, exited }
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const done = new Promise((r) => child.once('exit', r))
  child.kill('SIGTERM')
  await done
}

async function waitFor<T>(get: () => T | undefined, what: string, p: Running, limitMs = 60_000): Promise<T> {
  const start = Date.now()
  for (;;) {
    const v = get()
    if (v !== undefined) return v
    if (p.child.exitCode !== null) throw new Error(`${what}: process exited ${p.child.exitCode}\n${p.out()}\n${p.err()}`)
    if (Date.now() - start > limitMs) throw new Error(`timed out waiting for ${what}\n${p.out()}\n${p.err()}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

type Step = { step: string; [k: string]: unknown }
const steps = (out: string): Step[] =>
  out
    .split('\n')
    .filter((l) => l.startsWith('{"step"'))
    .map((l) => JSON.parse(l) as Step)

async function startToolServer(issuer: string): Promise<{ url: string; p: Running }> {
  const p = run(['examples/tool-server.ts'], { AEGIS_ISSUER: issuer, TOOL_PORT: '0' })
  const url = await waitFor(() => /\{"listening":"([^"]+)"\}/.exec(p.out())?.[1], 'the tool server', p)
  return { url, p }
}

const APPROVAL_POLICY =
  `
@id("crm-read") permit (principal, action == Action::"crm.read", resource) when { principal.scopes.contains("crm:read") };
@id("transfer-permit") permit (principal, action == Action::"payments.transfer", resource) when { principal.scopes.contains("payments:write") };
@id("transfer-approval") @approval("finance") @reason("transfers above 1000 need a finance approver")
forbid (principal, action == Action::"payments.transfer", resource) when { context.params has amount && ` +
  `context.params.amount > 1000 } unless { context.override };
`

let dev: Running
let tool: { url: string; p: Running }
let issuer = ''
let gateway = ''
let adminToken = ''
let clientId = ''
let clientSecret = ''

before(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'aegis-examples-'))
  dirs.push(dir)
  // The issuer must name the control plane's port before it starts (the examples and the tool server
  // follow it); the gateway takes any port and is read from the banner.
  const cpPort = await freePort()
  issuer = `http://127.0.0.1:${cpPort}`
  dev = run(['-e', "import('./src/cli/main.ts').then((m) => m.main(['dev'])).then((c) => { process.exitCode = c })"], {
    AEGIS_DATA_DIR: join(dir, 'data'),
    AEGIS_CONTROL_PORT: String(cpPort),
    AEGIS_GATEWAY_PORT: '0',
    AEGIS_ISSUER: issuer,
    AEGIS_LOG_LEVEL: 'warn',
  })
  const banner = await waitFor(() => (dev.out().includes('Ctrl-C stops it cleanly') ? dev.out() : undefined), 'the aegis dev banner', dev)
  clientId = /client_id\s+(\S+)/.exec(banner)?.[1] ?? ''
  clientSecret = /client_secret\s+(\S+)/.exec(banner)?.[1] ?? ''
  gateway = /gateway\s+(http\S+)/.exec(banner)?.[1] ?? ''
  adminToken = /admin token\s+(\S+)/.exec(banner)?.[1] ?? ''
  assert.ok(clientId && clientSecret && gateway && adminToken, banner)
  tool = await startToolServer(issuer)
})

function agentEnv(extra: Record<string, string> = {}): Record<string, string> {
  return { AEGIS_ISSUER: issuer, AEGIS_CLIENT_ID: clientId, AEGIS_CLIENT_SECRET: clientSecret, AEGIS_GATEWAY_URL: gateway, AEGIS_TOOL_URL: tool.url, ...extra }
}

async function adminCall(method: string, path: string, body?: unknown, token = adminToken): Promise<Record<string, unknown>> {
  const res = await fetch(`${issuer}/admin/v1${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  })
  const text = await res.text()
  assert.ok(res.status < 300, `${method} ${path}: ${res.status} ${text}`)
  return JSON.parse(text) as Record<string, unknown>
}

test('tool-server example refuses a call without a token, with the RFC 6750 challenge', async () => {
  const anon = await fetch(`${tool.url}/crm/records/42`)
  assert.equal(anon.status, 401)
  assert.match(anon.headers.get('www-authenticate') ?? '', /^Bearer/)
  assert.equal(((await anon.json()) as { error: string }).error, 'invalid_token')
})

test('agent-call example against `aegis dev`: dry run, read, the tool call verified by the tool server, transfer', async () => {
  const agent = run(['examples/agent-call.ts'], agentEnv())
  assert.equal(await agent.exited, 0, `${agent.out()}\n${agent.err()}`)
  const s = steps(agent.out())
  assert.deepEqual(
    s.map((x) => x.step),
    ['would_be', 'dry_run', 'authorize', 'tool_call', 'authorize'],
  )
  assert.equal(s[1]!.enforced, false)
  assert.equal(s[2]!.decision, 'allow')
  assert.equal(s[3]!.status, 200)
  assert.equal((s[3]!.body as { record: { id: string } }).record.id, '42')
  assert.equal((s[3]!.body as { served_to: { agent_id: string } }).served_to.agent_id, 'demo-agent')
  assert.equal(s[4]!.decision, 'allow')
  // Nothing the agent prints is a token or its secret.
  assert.ok(!agent.out().includes(clientSecret) && !agent.err().includes(clientSecret))
  assert.ok(!/eyJ[A-Za-z0-9_-]{10,}\./.test(agent.out() + agent.err()), 'no JWT in the output')
})

test('agent-call example waits for a finance approval, then completes the transfer with the override', async () => {
  const created = await adminCall('POST', '/tenants/demo/policies', { version: '2026-11-29.1', cedar: APPROVAL_POLICY, mode: 'enforce' })
  await adminCall('POST', `/tenants/demo/policies/${String(created.id)}/activate`, {})
  const approver = String((await adminCall('POST', '/admin-tokens', { tenant: 'demo', role: 'approver', name: 'finance', groups: ['finance'] })).token)
  // The gateway learns of the new bundle through its feed: wait until it decides with it.
  const probe = new AegisClient({ issuer, clientId, clientSecret, gatewayUrl: gateway, dryRun: true })
  try {
    for (let i = 0; ; i++) {
      const d = await probe.authorize({ tool: 'payments.transfer', params: { amount: 2500, currency: 'EUR', to: 'acct-9' } })
      if (d.decision === 'approval_needed') break
      assert.ok(i < 500, 'the gateway never applied the policy')
      await new Promise((r) => setTimeout(r, 20))
    }
  } finally {
    probe.close()
  }

  const agent = run(['examples/agent-call.ts'], agentEnv({ AEGIS_TRANSFER_AMOUNT: '2500' }))
  let id: string | undefined
  for (let i = 0; i < 1500 && !id; i++) {
    const list = (await adminCall('GET', '/approvals?status=pending', undefined, approver)) as {
      approvals?: Array<{ id: string; params: { amount?: number } }>
    }
    id = list.approvals?.find((a) => a.params.amount === 2500)?.id
    if (!id) {
      assert.equal(agent.child.exitCode, null, `the agent exited before an approval was opened\n${agent.out()}\n${agent.err()}`)
      await new Promise((r) => setTimeout(r, 20))
    }
  }
  assert.ok(id, 'the example opened an approval request')
  await adminCall('POST', `/approvals/${id}/approve`, { reason: 'examples test' }, approver)
  assert.equal(await agent.exited, 0, `${agent.out()}\n${agent.err()}`)
  const s = steps(agent.out())
  assert.equal(s.find((x) => x.step === 'dry_run')!.decision, 'approval_needed')
  const last = s.at(-1)!
  assert.equal(last.step, 'authorize')
  assert.equal(last.tool, 'payments.transfer')
  assert.equal(last.decision, 'allow')
})
