import { parseArgs } from 'node:util'
import { readFile, stat } from 'node:fs/promises'
import type { CliContext } from '../context.js'
import { CedarCompiler, validatePolicyText } from '../../policy/cedar/engine.js'
import { CedarSyntaxError } from '../../policy/cedar/analyze.js'
import { AegisError } from '../../errors.js'
import { applyObligations } from '../../policy/sanitize.js'
import { formatReport, loadPolicyDir, requestFromCase, runPolicyTests, type PolicyTestCase } from '../../policy/test-runner.js'

const HELP = `aegis policy — Cedar policy bundles

Usage:
  aegis policy test DIR
      Runs the test cases (DIR/tests.json) against the policies (DIR/*.cedar);
      a DIR without *.cedar runs every policy directory below it. Prints a
      pass/fail table; exits 1 on any failure.
  aegis policy eval --policy FILE|DIR --request JSON|@FILE
      Answers one request. The request has the shape of a test case:
      {"principal": {"agent_id", "tenant", "scopes", "capabilities"},
       "action": "payments.transfer", "resource": "...", "params": {...},
       "time": 1767225600, "client_address": "...", "override": false,
       "delegation": {"chain": ["planner", "worker"], "user"?, "user_resources"?}}
      Prints the decision as JSON (with the sanitized params for sanitize).
  aegis policy validate FILE|DIR
      Parses and validates against the Aegis schema; bad Cedar is reported
      with its line and column. Exits 1 when invalid.

Policy templates ship in policies/templates/{payments,ehr,egress}.`

async function readPolicy(path: string): Promise<{ text: string; source: string }> {
  if ((await stat(path)).isDirectory()) {
    const { text } = await loadPolicyDir(path)
    return { text, source: path }
  }
  return { text: await readFile(path, 'utf8'), source: path }
}

function reportError(ctx: CliContext, prefix: string, err: unknown): number {
  if (err instanceof CedarSyntaxError) {
    ctx.err(`${prefix}: invalid Cedar policy`)
    for (const p of err.problems) ctx.err(`  line ${p.line}, column ${p.column}: ${p.message}`)
    return 1
  }
  const e = err as NodeJS.ErrnoException
  if (e?.code === 'ENOENT' || e?.code === 'EISDIR' || e?.code === 'ENOTDIR') {
    ctx.err(`${prefix}: ${e.message}`)
    return 1
  }
  if (err instanceof AegisError) {
    ctx.err(`${prefix}: ${err.message}`)
    return 1
  }
  throw err
}

async function testCmd(args: string[], ctx: CliContext): Promise<number> {
  const dir = args[0]
  if (!dir || args.length > 1) {
    ctx.err(`aegis policy test: one DIR is required\n\n${HELP}`)
    return 2
  }
  try {
    await stat(dir)
  } catch (err) {
    return reportError(ctx, 'aegis policy test', err)
  }
  const report = await runPolicyTests(dir)
  for (const line of formatReport(report)) ctx.out(line)
  return report.failed > 0 ? 1 : 0
}

async function evalCmd(args: string[], ctx: CliContext): Promise<number> {
  let values: { policy?: string; request?: string }
  try {
    values = parseArgs({ args, options: { policy: { type: 'string' }, request: { type: 'string' } }, strict: true }).values
  } catch (err) {
    ctx.err(`aegis policy eval: ${(err as Error).message}\n\n${HELP}`)
    return 2
  }
  if (!values.policy || !values.request) {
    ctx.err(`aegis policy eval: --policy and --request are required\n\n${HELP}`)
    return 2
  }
  let req: PolicyTestCase
  try {
    const raw = values.request.startsWith('@') ? await readFile(values.request.slice(1), 'utf8') : values.request
    const parsed: unknown = JSON.parse(raw)
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('the request must be a JSON object')
    req = parsed as PolicyTestCase
    if (typeof req.action !== 'string' || req.action === '') throw new Error('the request needs an "action" (the tool name)')
    if (req.params !== undefined && (req.params === null || typeof req.params !== 'object' || Array.isArray(req.params)))
      throw new Error('"params" must be an object')
  } catch (err) {
    ctx.err(`aegis policy eval: bad --request: ${(err as Error).message}`)
    return 2
  }
  try {
    const { text } = await readPolicy(values.policy)
    const engine = new CedarCompiler({ validate: true }).compile({
      id: 'cli',
      tenant: req.principal?.tenant ?? 'test',
      version: 'cli',
      cedar: text,
      mode: 'enforce',
    })
    const request = requestFromCase(req)
    const result = engine.evaluate(request)
    const out: Record<string, unknown> = {
      decision: result.decision,
      reasons: result.reasons,
      policy_ids: result.policyIds,
      obligations: result.obligations,
      risk: result.risk,
    }
    if (result.approvalGroup !== undefined) out.approval_group = result.approvalGroup
    if (result.requireConsole) out.require_console = true
    if (result.decision === 'sanitize') out.params = applyObligations(request, result.obligations).params
    ctx.out(JSON.stringify(out, null, 2))
    return 0
  } catch (err) {
    return reportError(ctx, 'aegis policy eval', err)
  }
}

async function validateCmd(args: string[], ctx: CliContext): Promise<number> {
  const file = args[0]
  if (!file || args.length > 1) {
    ctx.err(`aegis policy validate: one FILE is required\n\n${HELP}`)
    return 2
  }
  try {
    const { text, source } = await readPolicy(file)
    const v = validatePolicyText(text, source)
    ctx.out(
      `${source}: valid, ${v.policies} ${v.policies === 1 ? 'policy' : 'policies'}; tools: ${[...v.tools, ...v.groups].sort().join(', ') || '(all, unscoped)'}`,
    )
    return 0
  } catch (err) {
    return reportError(ctx, `aegis policy validate ${file}`, err)
  }
}

/** `aegis policy test|eval|validate`; resolves to the exit code (0 ok, 1 failed/invalid, 2 usage). */
export async function policyCommand(argv: string[], ctx: CliContext): Promise<number> {
  const [sub, ...rest] = argv
  if (sub === undefined) {
    ctx.err(HELP)
    return 2
  }
  if (sub === '--help' || sub === '-h' || sub === 'help' || rest.includes('--help')) {
    ctx.out(HELP)
    return 0
  }
  switch (sub) {
    case 'test':
      return testCmd(rest, ctx)
    case 'eval':
      return evalCmd(rest, ctx)
    case 'validate':
      return validateCmd(rest, ctx)
    default:
      ctx.err(`aegis policy: unknown subcommand "${sub}"\n\n${HELP}`)
      return 2
  }
}
