/**
 * Policy evaluation: p50/p99 of `CedarEngine.evaluate()` (decision cache off,
 * and for the 500-policy bundle also on) for each shipped template and for a generated 500-policy bundle, plus the bare
 * `statefulIsAuthorized` rate over the same 500-policy set (whole set
 * preparsed, Cedar inputs built once), the baseline the full gateway
 * pipeline is compared with. Goals (issue 4): template p99 < 0.5 ms,
 * 500-policy p99 < 1 ms.
 */
import { readFileSync } from 'node:fs'
import * as cedar from '@cedar-policy/cedar-wasm/nodejs'
import { CedarCompiler, type CedarEngine } from '../src/policy/cedar/engine.js'
import { buildContext, buildEntities } from '../src/policy/cedar/request.js'
import { requestFromCase, type PolicyTestCase } from '../src/policy/test-runner.js'
import type { PolicyRequest } from '../src/policy/types.js'
import { loopRate, percentiles } from './util.js'

export interface LatencyFigures {
  p50Ms: number
  p99Ms: number
  perSec: number
  calls: number
}

export interface PolicyBenchResult {
  /** Decision cache off: every call evaluated by Cedar (the goal figures). */
  templates: Record<string, LatencyFigures & { policies: number }>
  bundle500: LatencyFigures & { policies: number; compileMs: number }
  /** The same 500-policy calls repeated, answered by the decision cache. */
  bundle500Cached: LatencyFigures
  /** statefulIsAuthorized over the whole 500-policy set, inputs prebuilt. */
  bareStatefulPerSec: number
}

/**
 * A 500-policy bundle shaped like a large tenant's: 50 tools with ten
 * policies each (limits, approvals, redactions, scope checks), plus a few
 * unscoped and group-wide guards.
 */
export function generatePolicyBundle(n = 500): string {
  const out: string[] = []
  for (let i = 0; i < n; i++) {
    const tool = `svc${Math.floor(i / 10) % 50}.op${i % 5}`
    switch (i % 10) {
      case 0:
        out.push(
          `@id("p${i}") @risk("high") permit(principal, action == Action::"${tool}", resource) when { principal.scopes.contains("svc:write") && ` +
            `context.params has amount && context.params.amount <= ${1000 + i} };`,
        )
        break
      case 1:
        out.push(
          `@id("p${i}") @approval("ops") forbid(principal, action == Action::"${tool}", resource) when { context.params has amount && ` +
            `context.params.amount > ${500 + i} } unless { context.override };`,
        )
        break
      case 2:
        out.push(
          `@id("p${i}") @sanitize("redact:/params/card_number, redact:/params/owner/ssn") permit(principal, action == Action::"${tool}", resource) ` +
            `when { context.params has kind && context.params.kind == "card" };`,
        )
        break
      case 3:
        out.push(
          `@id("p${i}") forbid(principal, action == Action::"${tool}", resource) when { context.params has country && ["KP", ` +
            `"IR"].contains(context.params.country) };`,
        )
        break
      case 4:
        out.push(
          `@id("p${i}") permit(principal, action == Action::"${tool}", resource) when { principal.scopes.contains("svc:read") && resource.id like "acct-*" };`,
        )
        break
      case 5:
        out.push(
          `@id("p${i}") forbid(principal, action in Action::"svc${Math.floor(i / 10) % 50}.*", resource) when { context.params has blocked && ` +
            `context.params.blocked == true };`,
        )
        break
      case 6:
        out.push(
          `@id("p${i}") permit(principal, action == Action::"${tool}", resource) when { context.params has owner && context.params.owner has team ` +
            `&& principal.scopes.contains(context.params.owner.team) };`,
        )
        break
      case 7:
        out.push(
          `@id("p${i}") forbid(principal, action == Action::"${tool}", resource) when { context has client_address && ` +
            `ip(context.client_address).isInRange(ip("198.51.100.0/24")) };`,
        )
        break
      case 8:
        out.push(
          `@id("p${i}") permit(principal, action == Action::"${tool}", resource) when { context.time > 1700000000 && context.params has ref && ` +
            `context.params.ref like "INV-*" };`,
        )
        break
      default:
        out.push(
          i % 100 === 9
            ? `@id("p${i}") forbid(principal, action, resource) when { context.params has kill_switch_${i} };`
            : `@id("p${i}") permit(principal, action == Action::"${tool}", resource) when { principal.capabilities.contains("${tool}") && ` +
                `context.params has dry_run && context.params.dry_run == true };`,
        )
    }
  }
  return out.join('\n')
}

function bundleRequests(count: number): PolicyRequest[] {
  const reqs: PolicyRequest[] = []
  for (let i = 0; i < count; i++) {
    const tool = `svc${(i * 7) % 50}.op${i % 5}`
    reqs.push({
      principal: { tenant: 'bench', agentId: `agent-${i % 8}`, clientId: 'c', scopes: ['svc:write', 'svc:read', 'team-a'], capabilities: [tool] },
      action: tool,
      resource: `acct-${i}`,
      params: {
        amount: 200 + ((i * 37) % 2000),
        currency: 'USD',
        kind: i % 3 === 0 ? 'card' : 'bank',
        card_number: '4111111111111111',
        owner: { team: 'team-a', ssn: '000' },
        ref: `INV-${i}`,
      },
      time: 1_767_225_600,
      clientAddress: '203.0.113.7',
      override: false,
    })
  }
  return reqs
}

/** Times each evaluate() call for `seconds`, cycling through `reqs`. */
function measure(engine: CedarEngine, reqs: PolicyRequest[], seconds: number): LatencyFigures {
  for (let i = 0; i < 2000; i++) engine.evaluate(reqs[i % reqs.length]!) // warm-up
  const samples: number[] = []
  const end = performance.now() + seconds * 1000
  let i = 0
  const start = performance.now()
  while (performance.now() < end) {
    const t0 = performance.now()
    engine.evaluate(reqs[i++ % reqs.length]!)
    samples.push(performance.now() - t0)
  }
  const elapsed = (performance.now() - start) / 1000
  const p = percentiles(samples)
  return { p50Ms: p.p50, p99Ms: p.p99, perSec: samples.length / elapsed, calls: samples.length }
}

/** Runs the policy benchmarks, spending about `seconds` on each measurement. */
export async function benchPolicy(seconds: number): Promise<PolicyBenchResult> {
  const compiler = new CedarCompiler({ cacheSize: 0 })
  const templates: PolicyBenchResult['templates'] = {}
  for (const name of ['payments', 'ehr', 'egress']) {
    const dir = `policies/templates/${name}`
    const text = readFileSync(`${dir}/policy.cedar`, 'utf8')
    const engine = compiler.compile({ id: `bench-${name}`, tenant: 'bench', version: name, cedar: text, mode: 'enforce' })
    const suite = JSON.parse(readFileSync(`${dir}/tests.json`, 'utf8')) as { defaults?: Partial<PolicyTestCase>; cases: PolicyTestCase[] }
    const reqs = suite.cases.map((c) => requestFromCase(c, suite.defaults ?? {}))
    templates[name] = { ...measure(engine, reqs, seconds), policies: engine.policyCount }
  }

  const text = generatePolicyBundle(500)
  const t0 = performance.now()
  const big = compiler.compile({ id: 'bench-500', tenant: 'bench', version: '500', cedar: text, mode: 'enforce' })
  const compileMs = performance.now() - t0
  const reqs = bundleRequests(256)
  const bundle500 = { ...measure(big, reqs, seconds), policies: big.policyCount, compileMs }
  const cachedEngine = new CedarCompiler().compile({ id: 'bench-500', tenant: 'bench', version: '500', cedar: text, mode: 'enforce' })
  const bundle500Cached = measure(cachedEngine, reqs, seconds)

  // The bare baseline: the whole set preparsed once, every Cedar input prebuilt.
  const psetId = 'bench:bare-500'
  const pre = cedar.preparsePolicySet(psetId, { staticPolicies: text })
  if (pre.type !== 'success') throw new Error('bench bundle failed to preparse')
  const calls = reqs.map((r) => ({
    principal: { type: 'Agent', id: r.principal.agentId },
    action: { type: 'Action', id: r.action },
    resource: { type: 'Resource', id: r.resource ?? '' },
    context: buildContext(r),
    entities: buildEntities(r, null),
    preparsedPolicySetId: psetId,
  }))
  let k = 0
  const bare = loopRate(seconds, () => {
    cedar.statefulIsAuthorized(calls[k++ % calls.length]!)
  })
  return { templates, bundle500, bundle500Cached, bareStatefulPerSec: bare.perSec }
}

if (process.argv[1]?.endsWith('bench/policy.ts')) {
  const seconds = Number(process.env.BENCH_SECONDS ?? 3)
  const r = await benchPolicy(seconds)
  const row = (name: string, f: LatencyFigures & { policies: number }): string =>
    `${name.padEnd(12)} ${String(f.policies).padStart(4)} policies  p50 ${f.p50Ms.toFixed(3)} ms  p99 ${f.p99Ms.toFixed(3)} ` +
    `ms  ${Math.round(f.perSec).toLocaleString('en-US')} evals/s`
  for (const [name, f] of Object.entries(r.templates)) console.log(row(name, f))
  console.log(`${row('generated', r.bundle500)}  (compile ${r.bundle500.compileMs.toFixed(0)} ms)`)
  console.log(`${row('  cached', { ...r.bundle500Cached, policies: r.bundle500.policies })}  (repeated identical calls)`)
  console.log(`bare statefulIsAuthorized, whole 500-policy set: ${Math.round(r.bareStatefulPerSec).toLocaleString('en-US')} calls/s`)
}
