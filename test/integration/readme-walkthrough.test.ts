/**
 * The README as a user follows it, against a real `aegis dev` (free ports, a
 * temporary data directory): examples/walkthrough.sh (the walk-through's
 * steps, printing each answer), then the README's SDK and verifier examples
 * (examples/sdk-agent.ts, examples/verify-token.ts, which the README
 * includes verbatim; test/unit/readme-includes.test.ts checks that) run as
 * written, with the walk-through's policy active.
 */
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { freePort } from './sdk/helpers/roles.js'

const ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '../..')
const children: ChildProcess[] = []
let dir = ''

interface Running {
  child: ChildProcess
  out: () => string
  err: () => string
  exited: Promise<number | null>
}

function run(cmd: string, args: string[], env: Record<string, string>): Running {
  const child = spawn(cmd, args, { cwd: ROOT, env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
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

async function until<T>(get: () => T | undefined, what: string, p: Running, limitMs = 60_000): Promise<T> {
  const start = Date.now()
  for (;;) {
    const v = get()
    if (v !== undefined) return v
    if (p.child.exitCode !== null) throw new Error(`${what}: process exited ${p.child.exitCode}\n${p.out()}\n${p.err()}`)
    if (Date.now() - start > limitMs) throw new Error(`timed out waiting for ${what}\n${p.out()}\n${p.err()}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

let cp = ''
let gw = ''
let admin = ''
let clientId = ''
let clientSecret = ''

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'aegis-walkthrough-'))
  const port = await freePort()
  cp = `http://127.0.0.1:${port}`
  const dev = run(process.execPath, ['--import', 'tsx', 'test/helpers/aegis-cli.ts', 'dev'], {
    AEGIS_DATA_DIR: join(dir, 'data'),
    AEGIS_CONTROL_PORT: String(port),
    AEGIS_GATEWAY_PORT: '0',
    AEGIS_ISSUER: cp,
    AEGIS_LOG_LEVEL: 'warn',
  })
  const banner = await until(() => (dev.out().includes('Ctrl-C stops it cleanly') ? dev.out() : undefined), 'the aegis dev banner', dev)
  gw = /gateway\s+(http\S+)/.exec(banner)![1]!
  admin = /admin token\s+(\S+)/.exec(banner)![1]!
  clientId = /client_id\s+(\S+)/.exec(banner)![1]!
  clientSecret = /client_secret\s+(\S+)/.exec(banner)![1]!
})

after(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM')
  await Promise.all(children.map((c) => (c.exitCode !== null || c.signalCode !== null ? undefined : new Promise((r) => c.once('exit', r)))))
  rmSync(dir, { recursive: true, force: true })
})

/** The answers the script printed, in order, parsed where they are JSON. */
function answers(out: string): Array<Record<string, unknown>> {
  const parsed: Array<Record<string, unknown>> = []
  for (const l of out.split('\n')) {
    if (!l.startsWith('{')) continue
    try {
      parsed.push(JSON.parse(l) as Record<string, unknown>)
    } catch {
      // "{…} 401": an answer printed with its status on the same line
    }
  }
  return parsed
}

test('examples/walkthrough.sh: the README walk-through, step by step, against aegis dev', async () => {
  const w = run('bash', ['examples/walkthrough.sh'], { ADMIN: admin, CP: cp, GW: gw })
  assert.equal(await w.exited, 0, `${w.out()}\n${w.err()}`)
  const out = w.out() + w.err()
  const agent = answers(w.out())[0]!
  assert.equal(agent.agent_id, 'billing-bot')
  assert.deepEqual(agent.audiences, ['aegis-gateway'], 'registered without audiences: [AEGIS_AUDIENCE], as the README says')
  const decisions = answers(w.out()).filter((a) => 'decision' in a || 'error' in a)
  assert.deepEqual(
    decisions.map((d) => d.decision ?? d.error),
    ['allow', 'invalid_token', 'deny', 'sanitize', 'approval_needed', 'allow', 'invalid_token', 'invalid_token'],
    out,
  )
  assert.match(String(decisions[1]!.error_description), /replayed/)
  assert.deepEqual(decisions[3]!.params, { amount: 25, card_number: '[REDACTED]' })
  assert.match(String((decisions[5]!.reasons as string[]).at(-1)), /one-time override used/)
  assert.equal(decisions[6]!.error_description, 'override token already used')
  assert.equal(decisions[7]!.error_description, 'token revoked')
  assert.match(out, /"error":"invalid_client".* 401/, 'the single-use secret works once')
  for (const d of decisions) if ('policy_version' in d) assert.equal(d.policy_version, '2026-11-29.1')
})

test('README SDK example (examples/sdk-agent.ts) runs as written: token, tool call, transfer approved while it waits', async () => {
  const tool = run(process.execPath, ['--import', 'tsx', 'examples/tool-server.ts'], { AEGIS_ISSUER: cp, TOOL_PORT: '0' })
  const toolUrl = await until(() => /\{"listening":"([^"]+)"\}/.exec(tool.out())?.[1], 'the tool server', tool)
  const agent = run(process.execPath, ['--import', 'tsx', 'examples/sdk-agent.ts'], {
    AEGIS_ISSUER: cp,
    AEGIS_GATEWAY_URL: gw,
    AEGIS_TOOL_URL: toolUrl,
    AEGIS_CLIENT_ID: clientId,
    AEGIS_CLIENT_SECRET: clientSecret,
  })
  // The walk-through's policy asks finance for 5,000: approve it as step 6 does, while the example waits.
  const headers = { authorization: `Bearer ${admin}`, 'content-type': 'application/json' }
  let id: string | undefined
  for (let i = 0; !id; i++) {
    assert.ok(i < 1200, `no approval opened\n${agent.out()}\n${agent.err()}`)
    assert.equal(agent.child.exitCode, null, `the example exited early\n${agent.out()}\n${agent.err()}`)
    const list = (await (await fetch(`${cp}/admin/v1/approvals?status=pending`, { headers })).json()) as { approvals: Array<{ id: string; agent_id: string }> }
    id = list.approvals.find((a) => a.agent_id === 'demo-agent')?.id
    if (!id) await new Promise((r) => setTimeout(r, 50))
  }
  const approved = await fetch(`${cp}/admin/v1/approvals/${id}/approve`, { method: 'POST', headers, body: JSON.stringify({ reason: 'README example' }) })
  assert.equal(approved.status, 200, await approved.text())
  assert.equal(await agent.exited, 0, `${agent.out()}\n${agent.err()}`)
  assert.match(agent.out(), /^token for demo-agent$/m)
  assert.match(agent.out(), /tool server: 200 .*Ada Lovelace/s)
  assert.match(agent.out(), /^allow \[/m)
})

test('README verifier example (examples/verify-token.ts) runs as written, right after creating the verifier', async () => {
  const mint = run(process.execPath, ['--import', 'tsx', 'test/helpers/aegis-cli.ts', 'token', 'mint', '--tenant', 'demo', '--agent', 'demo-agent'], {
    AEGIS_DATA_DIR: join(dir, 'data'),
    AEGIS_ISSUER: cp,
    AEGIS_INSTANCE_ID: 'walkthrough-mint',
  })
  assert.equal(await mint.exited, 0, mint.err())
  const token = mint.out().trim()
  const v = run(process.execPath, ['--import', 'tsx', 'examples/verify-token.ts'], { AEGIS_ISSUER: cp, AEGIS_TOKEN: token })
  assert.equal(await v.exited, 0, `${v.out()}\n${v.err()}`)
  assert.equal(v.out(), 'demo-agent demo payments:write crm:read\ncached: true\n')
})
