import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { analyzeBundle, CedarSyntaxError, positionOf } from '../../../src/policy/cedar/analyze.js'
import { AEGIS_CEDAR_SCHEMA } from '../../../src/policy/cedar/schema.js'
import { validatePolicyText } from '../../../src/policy/cedar/engine.js'

function problems(text: string): CedarSyntaxError {
  try {
    analyzeBundle(text)
  } catch (err) {
    assert.ok(err instanceof CedarSyntaxError, String(err))
    assert.equal(err.code, 'invalid_request')
    assert.equal(err.status, 400)
    return err
  }
  assert.fail('expected the bundle to be refused')
}

describe('bundle validation', () => {
  test('a syntax error names its line and column', () => {
    const e = problems('permit(principal, action, resource);\n\n// comment\nforbid(principal, action, resource) when { 1 == };\n')
    assert.equal(e.problems[0]!.line, 4)
    assert.equal(e.problems[0]!.column, 49)
    assert.match(e.message, /line 4, column 49/)
  })

  test('columns count characters even after multi-byte text', () => {
    const e = problems('// héllo wörld\npermit(principal, action, resource) when { ü };')
    assert.equal(e.problems[0]!.line, 2)
    assert.equal(e.problems[0]!.column, 44)
    assert.deepEqual(positionOf('ab\ncé', Buffer.byteLength('ab\ncé')), { line: 2, column: 3 })
  })

  test('schema errors (unknown principal attribute, wrong type) name line and column', () => {
    const e = problems(
      'permit(principal, action == Action::"a", resource);\npermit(principal, action == Action::"b", resource)\n  when { ' +
        'principal.scope.contains("x") };\npermit(principal, action, resource) when { context.time == "noon" };',
    )
    assert.equal(e.problems.length, 2)
    assert.deepEqual([e.problems[0]!.line, e.problems[0]!.column], [3, 10])
    assert.match(e.problems[0]!.message, /scope/)
    assert.equal(e.problems[1]!.line, 4)
    assert.doesNotMatch(e.message, /policy\d/)
  })

  test('open-ended params are accepted, including ip() on them; other context keys are not', () => {
    validatePolicyText('permit(principal, action, resource) when { context.params has a && context.params.a.b > 1 && ip(context.params.addr).isLoopback() };')
    const e = problems('permit(principal, action, resource) when { context.parms has a };')
    assert.match(e.message, /parms/)
  })

  test('entity types outside the schema are refused', () => {
    problems('permit(principal == User::"alice", action, resource);')
  })

  test('annotations are checked: @approval on a permit, @sanitize on a forbid, bad pointers, bad risk, duplicate @id', () => {
    assert.match(problems('@approval("g") permit(principal, action, resource);').message, /@approval applies to forbid/)
    assert.match(problems('@sanitize("redact:/params/x") forbid(principal, action, resource);').message, /permit policies only/)
    assert.match(problems('@sanitize("redact:/resource") permit(principal, action, resource);').message, /\/params/)
    assert.match(problems('@sanitize("mask:/params/x") permit(principal, action, resource);').message, /unknown directive/)
    assert.match(problems('@risk("extreme") permit(principal, action, resource);').message, /@risk/)
    assert.match(problems('@approval_via("slack") @approval("g") forbid(principal, action, resource);').message, /console/)
    const dup = problems('@id("a") permit(principal, action, resource);\n@id("a") forbid(principal, action, resource);')
    assert.equal(dup.problems[0]!.line, 2)
  })

  test('templates with slots and empty bundles are refused', () => {
    problems('permit(principal == ?principal, action, resource);')
    problems('// nothing here\n')
  })

  test('the published schema file is the schema the engine uses', () => {
    assert.equal(readFileSync('policies/schema.cedarschema', 'utf8'), AEGIS_CEDAR_SCHEMA)
  })

  test('annotations are read into policy metadata in source order', () => {
    const a = analyzeBundle(
      '@id("x") @risk("high") permit(principal, action == Action::"t", resource);\n@approval("ops") @approval_via("console") @reason("why") ' +
        'forbid(principal, action in [Action::"t", Action::"g.*"], resource);\npermit(principal, action, resource);',
    )
    assert.deepEqual(
      a.policies.map((p) => p.meta.id),
      ['x', 'policy1', 'policy2'],
    )
    assert.equal(a.policies[0]!.meta.risk, 'high')
    assert.deepEqual(a.policies[1]!.meta, { id: 'policy1', effect: 'forbid', approval: 'ops', requireConsole: true, risk: 'normal', redact: [], reason: 'why' })
    assert.deepEqual(a.policies[1]!.scope, { kind: 'some', tools: ['t'], groups: ['g.*'] })
    assert.deepEqual(a.policies[2]!.scope, { kind: 'all' })
    assert.deepEqual(a.groups, ['g.*'])
  })
})
