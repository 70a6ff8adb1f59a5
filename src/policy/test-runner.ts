/**
 * Policy test cases next to the policies (`aegis policy test DIR`).
 *
 * A policy directory holds one or more `*.cedar` files (one bundle, the files
 * concatenated in name order) and `tests.json`:
 *
 * ```json
 * {
 *   "defaults": { "principal": { "agent_id": "billing-bot", "scopes": ["payments:write"] }, "time": 1767225600 },
 *   "cases": [
 *     { "name": "small transfer", "action": "payments.transfer",
 *       "params": { "amount": 100, "currency": "USD" }, "expect": "allow", "risk": "high" },
 *     { "name": "card redacted", "action": "payments.charge", "params": { "amount": 5, "card_number": "4111" },
 *       "expect": "sanitize", "obligations": ["/params/card_number"] }
 *   ]
 * }
 * ```
 *
 * (a bare array of cases works too). A case: `name`, `action`, `expect`
 * (allow | deny | approval_needed | sanitize), optional `principal`
 * (`agent_id`, `tenant`, `client_id`, `scopes`, `capabilities`), `resource`,
 * `params`, `time` (epoch seconds), `client_address`, `override`,
 * `delegation` (a delegated token's chain: `chain`, the agent ids from the
 * original subject to the current actor, and `user`, `user_issuer`,
 * `user_resources` when a person delegated; docs/delegation.md), and
 * optional further expectations: `obligations` (the exact set of redacted
 * pointers), `approval_group`, `require_console`, `risk`, `policy_ids`
 * (the exact determining policies).
 */
import { readdir, readFile, stat } from 'node:fs/promises'
import { join, relative } from 'node:path'
import { CedarCompiler, type CedarEngine } from './cedar/engine.js'
import { analyzeBundle, CedarSyntaxError } from './cedar/analyze.js'
import type { Decision, PolicyRequest, PolicyResult } from './types.js'

const DECISIONS: readonly Decision[] = ['allow', 'deny', 'approval_needed', 'sanitize']

/** One test case as written in tests.json (wire names, snake_case). */
export interface PolicyTestCase {
  name: string
  action: string
  expect: Decision
  principal?: { agent_id?: string; tenant?: string; client_id?: string; scopes?: string[]; capabilities?: string[] }
  resource?: string | null
  params?: Record<string, unknown>
  time?: number
  client_address?: string | null
  override?: boolean
  delegation?: { chain: string[]; user?: string; user_issuer?: string; user_resources?: string[] }
  obligations?: Array<string | { type: 'redact'; path: string }>
  approval_group?: string
  require_console?: boolean
  risk?: 'high' | 'normal'
  policy_ids?: string[]
}

export interface PolicyTestResult {
  name: string
  passed: boolean
  expected: Decision
  /** The decision, or `error` when the case itself is malformed. */
  actual: Decision | 'error'
  /** What differed (empty when passed). */
  problems: string[]
  result: PolicyResult | null
}

export interface PolicySuiteResult {
  dir: string
  files: string[]
  /** Set when the bundle or tests.json could not be loaded; the suite then counts as one failure. */
  error: string | null
  results: PolicyTestResult[]
}

export interface PolicyTestReport {
  suites: PolicySuiteResult[]
  passed: number
  failed: number
}

/** Reads the bundle of a policy directory: its `*.cedar` files in name order. */
export async function loadPolicyDir(dir: string): Promise<{ text: string; files: string[] }> {
  const names = (await readdir(dir)).filter((n) => n.endsWith('.cedar')).sort()
  const texts: string[] = []
  for (const n of names) {
    const text = await readFile(join(dir, n), 'utf8')
    // Each file alone first, so errors carry that file's own lines.
    analyzeBundle(text, join(dir, n))
    texts.push(text)
  }
  return { text: texts.join('\n'), files: names.map((n) => join(dir, n)) }
}

/** Directories under `root` (itself included) that hold `*.cedar` files, sorted. */
export async function findPolicyDirs(root: string): Promise<string[]> {
  const entries = await readdir(root)
  if (entries.some((n) => n.endsWith('.cedar'))) return [root]
  const out: string[] = []
  for (const n of entries.sort()) {
    const p = join(root, n)
    if ((await stat(p)).isDirectory()) out.push(...(await findPolicyDirs(p)))
  }
  return out
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v)
}

/** The PolicyRequest a test case describes (defaults filled in). */
export function requestFromCase(c: PolicyTestCase, defaults: Partial<PolicyTestCase> = {}): PolicyRequest {
  const p = { ...defaults.principal, ...c.principal }
  const agentId = p.agent_id ?? 'test-agent'
  return {
    principal: {
      tenant: p.tenant ?? 'test',
      agentId,
      clientId: p.client_id ?? `client-${agentId}`,
      scopes: p.scopes ?? [],
      capabilities: p.capabilities ?? [c.action],
    },
    action: c.action,
    resource: c.resource !== undefined ? c.resource : (defaults.resource ?? null),
    params: c.params ?? defaults.params ?? {},
    time: c.time ?? defaults.time ?? Math.floor(Date.now() / 1000),
    clientAddress: c.client_address !== undefined ? c.client_address : (defaults.client_address ?? null),
    override: c.override ?? defaults.override ?? false,
    ...delegationOf(c.delegation ?? defaults.delegation),
  }
}

function delegationOf(d: PolicyTestCase['delegation']): Pick<PolicyRequest, 'delegation'> {
  if (d === undefined) return {}
  if (!Array.isArray(d.chain) || d.chain.length === 0) throw new Error('delegation.chain must list the agents of the chain')
  // A person's chain starts at the first acting agent; an agent's at the delegating agent, which is no act level.
  const depth = d.user !== undefined ? d.chain.length : d.chain.length - 1
  return {
    delegation: { chain: d.chain, depth, user: d.user ?? null, userIssuer: d.user_issuer ?? null, userResources: d.user_resources ?? [] },
  }
}

/** Compares a result with a case's expectations; returns what differs. */
export function checkCase(c: PolicyTestCase, r: PolicyResult): string[] {
  const problems: string[] = []
  if (r.decision !== c.expect) problems.push(`decision ${r.decision}, expected ${c.expect} (${r.reasons.join('; ')})`)
  if (c.obligations !== undefined) {
    const want = c.obligations.map((o) => (typeof o === 'string' ? o : o.path)).sort()
    const got = r.obligations.map((o) => o.path).sort()
    if (want.join('\n') !== got.join('\n')) problems.push(`obligations [${got.join(', ')}], expected [${want.join(', ')}]`)
  }
  if (c.approval_group !== undefined && r.approvalGroup !== c.approval_group)
    problems.push(`approval group ${r.approvalGroup ?? 'none'}, expected ${c.approval_group}`)
  if (c.require_console !== undefined && (r.requireConsole ?? false) !== c.require_console)
    problems.push(`require_console ${r.requireConsole ?? false}, expected ${c.require_console}`)
  if (c.risk !== undefined && r.risk !== c.risk) problems.push(`risk ${r.risk}, expected ${c.risk}`)
  if (c.policy_ids !== undefined && [...r.policyIds].sort().join(',') !== [...c.policy_ids].sort().join(','))
    problems.push(`policies [${r.policyIds.join(', ')}], expected [${c.policy_ids.join(', ')}]`)
  return problems
}

function caseProblem(c: unknown, i: number): string | null {
  if (!isObject(c)) return `case ${i + 1} is not an object`
  if (typeof c.name !== 'string' || c.name === '') return `case ${i + 1} has no name`
  if (typeof c.action !== 'string' || c.action === '') return `case "${c.name}" has no action`
  if (!DECISIONS.includes(c.expect as Decision)) return `case "${c.name}": expect must be one of ${DECISIONS.join(', ')}`
  if (c.params !== undefined && !isObject(c.params)) return `case "${c.name}": params must be an object`
  return null
}

/** Runs one loaded engine over test cases. */
export function runCases(engine: CedarEngine, cases: unknown[], defaults: Partial<PolicyTestCase> = {}): PolicyTestResult[] {
  return cases.map((raw, i) => {
    const bad = caseProblem(raw, i)
    const c = raw as PolicyTestCase
    const name = isObject(raw) && typeof raw.name === 'string' ? raw.name : `case ${i + 1}`
    if (bad) return { name, passed: false, expected: (c?.expect ?? 'allow') as Decision, actual: 'error', problems: [bad], result: null }
    const result = engine.evaluate(requestFromCase(c, defaults))
    const problems = checkCase(c, result)
    return { name, passed: problems.length === 0, expected: c.expect, actual: result.decision, problems, result }
  })
}

async function runSuite(dir: string, compiler: CedarCompiler): Promise<PolicySuiteResult> {
  const suite: PolicySuiteResult = { dir, files: [], error: null, results: [] }
  try {
    const { text, files } = await loadPolicyDir(dir)
    suite.files = files
    const engine = compiler.compile({ id: `test:${dir}`, tenant: 'test', version: 'test', cedar: text, mode: 'enforce' })
    let raw: unknown
    try {
      raw = JSON.parse(await readFile(join(dir, 'tests.json'), 'utf8'))
    } catch (err) {
      suite.error = (err as NodeJS.ErrnoException).code === 'ENOENT' ? `no tests.json in ${dir}` : `tests.json: ${(err as Error).message}`
      return suite
    }
    const cases = Array.isArray(raw) ? raw : isObject(raw) && Array.isArray(raw.cases) ? raw.cases : null
    if (!cases) {
      suite.error = 'tests.json must be an array of cases or {"cases": [...]}'
      return suite
    }
    const defaults = isObject(raw) && isObject(raw.defaults) ? (raw.defaults as Partial<PolicyTestCase>) : {}
    suite.results = runCases(engine, cases, defaults)
  } catch (err) {
    suite.error = err instanceof CedarSyntaxError || err instanceof Error ? err.message : String(err)
  }
  return suite
}

/**
 * Runs the test cases of every policy directory under `dir` (itself, or its
 * subdirectories when it holds no `*.cedar`). Never throws for bad policies
 * or cases: they are reported as failures.
 */
export async function runPolicyTests(dir: string, compiler: CedarCompiler = new CedarCompiler()): Promise<PolicyTestReport> {
  const dirs = await findPolicyDirs(dir)
  const suites: PolicySuiteResult[] = []
  for (const d of dirs) suites.push(await runSuite(d, compiler))
  if (dirs.length === 0) suites.push({ dir, files: [], error: `no *.cedar files under ${dir}`, results: [] })
  let passed = 0
  let failed = 0
  for (const s of suites) {
    if (s.error) failed++
    for (const r of s.results) r.passed ? passed++ : failed++
  }
  return { suites, passed, failed }
}

/** The report as a pass/fail table, one line per case. */
export function formatReport(report: PolicyTestReport, cwd = process.cwd()): string[] {
  const rows: string[][] = [['RESULT', 'SUITE', 'CASE', 'EXPECTED', 'ACTUAL']]
  const notes: string[] = []
  for (const s of report.suites) {
    const suite = relative(cwd, s.dir) || '.'
    if (s.error) {
      rows.push(['FAIL', suite, '(bundle)', '-', 'error'])
      notes.push(`${suite}: ${s.error}`)
    }
    for (const r of s.results) {
      rows.push([r.passed ? 'pass' : 'FAIL', suite, r.name, r.expected, r.actual])
      for (const p of r.problems) notes.push(`${suite} / ${r.name}: ${p}`)
    }
  }
  const widths = rows[0]!.map((_, i) => Math.min(60, Math.max(...rows.map((r) => r[i]!.length))))
  const lines = rows.map((r) =>
    r
      .map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd(),
  )
  if (notes.length > 0) lines.push('', ...notes)
  lines.push('', `${report.passed} passed, ${report.failed} failed`)
  return lines
}
