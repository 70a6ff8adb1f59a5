/**
 * The examples, run as their own processes the way a user runs them:
 * against `aegis dev` (spawned with its own data dir and ports), and the
 * agent once more against a control plane + gateway with an approval policy,
 * approving the transfer while the example waits.
 */
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { freePort, startAegis, TENANT } from './sdk/helpers/roles.js'

const ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '../..')
const children: ChildProcess[] = []
const dirs: string[] = []

after(async () => {
  await Promise.all(children.map(stop))
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})

interface Running { child: ChildProcess; out: () => string; err: () => string; exited: Promise<number | null> }

function run(args: string[], env: Record<string, string>): Running {
  const child = spawn(process.execPath, ['--import', 'tsx', ...args], { cwd: ROOT, env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  children.push(child)
  let out = ''
  let err = ''
  child.stdout!.on('data', (b: Buffer) => { out += b.toString('utf8') })
  child.stderr!.on('data', (b: Buffer) => { err += b.toString('utf8') })
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
const steps = (out: string): Step[] => out.split('\n').filter((l) => l.startsWith('{"step"')).map((l) => JSON.parse(l) as Step)

async function startToolServer(issuer: string): Promise<{ url: string; p: Running }> {
  const p = run(['examples/tool-server.ts'], { AEGIS_ISSUER: issuer, TOOL_PORT: '0' })
  const url = await waitFor(() => /\{"listening":"([^"]+)"\}/.exec(p.out())?.[1], 'the tool server', p)
  return { url, p }
}

test('examples against `aegis dev`: the agent authorizes (dry run, read, transfer) and calls the tool server, which verifies its token', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'aegis-examples-'))
  dirs.push(dir)
  const [cpPort, gwPort] = [await freePort(), await freePort()]
  const issuer = `http://127.0.0.1:${cpPort}`
  const dev = run(['-e', "import('./src/cli/main.ts').then((m) => m.main(['dev'])).then((c) => { process.exitCode = c })"], {
    AEGIS_DATA_DIR: join(dir, 'data'), AEGIS_CONTROL_PORT: String(cpPort), AEGIS_GATEWAY_PORT: String(gwPort), AEGIS_ISSUER: issuer, AEGIS_LOG_LEVEL: 'warn',
  })
  const banner = await waitFor(() => (dev.out().includes('Ctrl-C stops it cleanly') ? dev.out() : undefined), 'the aegis dev banner', dev)
  const clientId = /client_id\s+(\S+)/.exec(banner)?.[1]
  const clientSecret = /client_secret\s+(\S+)/.exec(banner)?.[1]
  const gateway = /gateway\s+(http\S+)/.exec(banner)?.[1]
  assert.ok(clientId && clientSecret && gateway, banner)

  const tool = await startToolServer(issuer)
  // Without a token the tool server refuses, with the RFC 6750 challenge.
  const anon = await fetch(`${tool.url}/crm/records/42`)
  assert.equal(anon.status, 401)
  assert.match(anon.headers.get('www-authenticate') ?? '', /^Bearer/)

  const agent = run(['examples/agent-call.ts'], {
    AEGIS_ISSUER: issuer, AEGIS_CLIENT_ID: clientId, AEGIS_CLIENT_SECRET: clientSecret, AEGIS_GATEWAY_URL: gateway, AEGIS_TOOL_URL: tool.url,
  })
  const code = await agent.exited
  assert.equal(code, 0, `${agent.out()}\n${agent.err()}`)
  const s = steps(agent.out())
  assert.deepEqual(s.map((x) => x.step), ['would_be', 'dry_run', 'authorize', 'tool_call', 'authorize'])
  assert.equal(s[1]!.enforced, false)
  assert.equal(s[2]!.decision, 'allow')
  assert.equal(s[3]!.status, 200)
  assert.deepEqual((s[3]!.body as { record: { id: string } }).record.id, '42')
  assert.equal((s[3]!.body as { served_to: { agent_id: string } }).served_to.agent_id, 'demo-agent')
  assert.equal(s[4]!.decision, 'allow')
  // Nothing the agent prints is a token or its secret.
  assert.ok(!agent.out().includes(clientSecret) && !agent.err().includes(clientSecret))
  assert.ok(!/eyJ[A-Za-z0-9_-]{10,}\./.test(agent.out() + agent.err()), 'no JWT in the output')

  await stop(tool.p.child)
  await stop(dev.child)
})

test('the agent example waits for a human approval and completes the transfer with the override', async () => {
  const aegis = await startAegis({
    gateway: true,
    cedar: `
@id("crm-read") permit (principal, action == Action::"crm.read", resource);
@id("transfer-permit") permit (principal, action == Action::"payments.transfer", resource) when { principal.scopes.contains("payments:write") };
@id("transfer-approval") @approval("finance") @reason("transfers above 1000 need a finance approver")
forbid (principal, action == Action::"payments.transfer", resource) when { context.params has amount && context.params.amount > 1000 } unless { context.override };
`,
  })
  try {
    const approver = String((await aegis.admin('POST', '/admin-tokens', { tenant: TENANT, role: 'approver', name: 'finance', groups: ['finance'] })).token)
    const cred = await aegis.credential()
    const agent = run(['examples/agent-call.ts'], {
      AEGIS_ISSUER: aegis.issuer, AEGIS_CLIENT_ID: cred.client_id, AEGIS_CLIENT_SECRET: cred.client_secret, AEGIS_GATEWAY_URL: aegis.gatewayUrl!, AEGIS_TRANSFER_AMOUNT: '2500',
    })
    const id = await (async () => {
      for (let i = 0; i < 1500; i++) {
        const res = await fetch(`${aegis.issuer}/admin/v1/approvals?status=pending`, { headers: { authorization: `Bearer ${approver}` } })
        const body = (await res.json()) as { approvals: Array<{ id: string; params: { amount?: number } }> }
        const found = body.approvals.find((a) => a.params.amount === 2500)?.id
        if (found) return found
        if (agent.child.exitCode !== null) break
        await new Promise((r) => setTimeout(r, 20))
      }
      throw new Error(`no approval opened\n${agent.out()}\n${agent.err()}`)
    })()
    const res = await fetch(`${aegis.issuer}/admin/v1/approvals/${id}/approve`, { method: 'POST', headers: { authorization: `Bearer ${approver}`, 'content-type': 'application/json' }, body: JSON.stringify({ reason: 'example test' }) })
    assert.equal(res.status, 200)
    assert.equal(await agent.exited, 0, `${agent.out()}\n${agent.err()}`)
    const s = steps(agent.out())
    assert.equal(s.find((x) => x.step === 'dry_run')!.decision, 'approval_needed')
    const last = s.at(-1)!
    assert.equal(last.step, 'authorize')
    assert.equal(last.tool, 'payments.transfer')
    assert.equal(last.decision, 'allow')
  } finally {
    await aegis.close()
  }
})
