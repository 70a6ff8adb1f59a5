import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { formatReport, runPolicyTests } from '../../../src/policy/test-runner.js'
import { policyCommand } from '../../../src/cli/commands/policy.js'
import type { CliContext } from '../../../src/cli/context.js'
import type { AegisConfig } from '../../../src/config/schema.js'

function capture(): CliContext & { lines: string[]; errors: string[] } {
  const lines: string[] = []
  const errors: string[] = []
  return { config: {} as AegisConfig, out: (l) => lines.push(l), err: (l) => errors.push(l), lines, errors }
}

describe('shipped policy templates', () => {
  for (const name of ['payments', 'ehr', 'egress']) {
    test(`${name}: every test case passes and covers all four decisions`, async () => {
      const report = await runPolicyTests(`policies/templates/${name}`)
      assert.equal(report.suites.length, 1)
      assert.equal(report.suites[0]!.error, null)
      const failed = report.suites[0]!.results.filter((r) => !r.passed)
      assert.deepEqual(
        failed.map((r) => `${r.name}: ${r.problems.join('; ')}`),
        [],
      )
      assert.ok(report.passed >= 14)
      const kinds = new Set(report.suites[0]!.results.map((r) => r.actual))
      assert.deepEqual([...kinds].sort(), ['allow', 'approval_needed', 'deny', 'sanitize'])
    })
  }
})

describe('aegis policy', () => {
  const dir = mkdtempSync(join(tmpdir(), 'aegis-policy-'))
  test.after(() => rmSync(dir, { recursive: true, force: true }))

  test('policy test prints a table and exits 1 when a case fails', async () => {
    writeFileSync(
      join(dir, 'p.cedar'),
      '@id("small") permit(principal, action == Action::"pay", resource) when { context.params has amount && context.params.amount < 10 };\n',
    )
    writeFileSync(
      join(dir, 'tests.json'),
      JSON.stringify({
        cases: [
          { name: 'small', action: 'pay', params: { amount: 5 }, expect: 'allow', policy_ids: ['small'] },
          { name: 'wrongly expected', action: 'pay', params: { amount: 50 }, expect: 'allow' },
          { name: 'bad case', action: 'pay', expect: 'maybe' },
        ],
      }),
    )
    const ctx = capture()
    assert.equal(await policyCommand(['test', dir], ctx), 1)
    const text = ctx.lines.join('\n')
    assert.match(text, /pass\s+\S+\s+small/)
    assert.match(text, /FAIL\s+\S+\s+wrongly expected\s+allow\s+deny/)
    assert.match(text, /1 passed, 2 failed/)
    const report = await runPolicyTests(dir)
    assert.equal(report.failed, 2)
    assert.ok(formatReport(report).length > 4)
  })

  test('policy test over the shipped templates exits 0', async () => {
    const ctx = capture()
    assert.equal(await policyCommand(['test', 'policies/templates'], ctx), 0)
    assert.match(ctx.lines.at(-1)!, /^\d+ passed, 0 failed$/)
  })

  test('policy validate reports line and column of bad Cedar', async () => {
    const file = join(dir, 'bad.cedar')
    writeFileSync(file, 'permit(principal, action, resource);\nforbid(principal, action, resource) when { context.params.x == };\n')
    const ctx = capture()
    assert.equal(await policyCommand(['validate', file], ctx), 1)
    assert.match(ctx.errors.join('\n'), /line 2, column 64/)
    const ok = capture()
    assert.equal(await policyCommand(['validate', 'policies/templates/payments/policy.cedar'], ok), 0)
    assert.match(ok.lines[0]!, /valid, 8 policies/)
  })

  test('policy eval answers one request, with sanitized params', async () => {
    const ctx = capture()
    const request = {
      principal: { agent_id: 'b', scopes: ['payments:write'] },
      action: 'payments.charge',
      params: { amount: 20, card_number: '4111111111111111' },
    }
    assert.equal(await policyCommand(['eval', '--policy', 'policies/templates/payments', '--request', JSON.stringify(request)], ctx), 0)
    const out = JSON.parse(ctx.lines.join('\n')) as { decision: string; params: Record<string, unknown>; obligations: unknown[] }
    assert.equal(out.decision, 'sanitize')
    assert.equal(out.params.card_number, '[REDACTED]')
    const bad = capture()
    assert.equal(await policyCommand(['eval', '--policy', 'policies/templates/payments', '--request', '{not json'], bad), 2)
  })

  test('--help and unknown subcommands', async () => {
    const ctx = capture()
    assert.equal(await policyCommand(['--help'], ctx), 0)
    assert.match(ctx.lines.join('\n'), /aegis policy test DIR/)
    assert.equal(await policyCommand(['frobnicate'], capture()), 2)
  })
})
