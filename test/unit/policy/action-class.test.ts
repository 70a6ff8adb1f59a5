import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { CedarCompiler } from '../../../src/policy/cedar/engine.js'
import { analyzeBundle, CedarSyntaxError } from '../../../src/policy/cedar/analyze.js'
import { isReadAction } from '../../../src/gateway/pipeline/action-class.js'
import type { PolicyRequest } from '../../../src/policy/types.js'

function req(action: string, params: Record<string, unknown> = {}): PolicyRequest {
  return {
    principal: { tenant: 't', agentId: 'bot', clientId: 'c1', scopes: [], capabilities: [action] },
    action,
    resource: null,
    params,
    time: 1_767_225_600,
    clientAddress: null,
    override: false,
  }
}

describe('@action_class on the determining policies', () => {
  const engine = new CedarCompiler().compile({
    id: 'b',
    tenant: 't',
    version: 'v1',
    mode: 'enforce',
    cedar:
      `
    @id("sync-read") @action_class("read") permit(principal, action == Action::"crm.sync", resource);
    @id("fetch-write") @action_class("write") permit(principal, action == Action::"crm.get_and_lock", resource);
    @id("both-read") @action_class("read") permit(principal, action == Action::"kb.mixed", resource);
    @id("both-write") @action_class("write") permit(principal, action == Action::"kb.mixed", resource);
    @id("plain") permit(principal, action == Action::"crm.read", resource);
    @id("san") @action_class("read") @sanitize("redact:/params/ssn") permit(principal, action == Action::"crm.lookup", resource);
    @id("appr") @action_class("write") @approval("ops") forbid(principal, action == Action::"crm.lookup", resource) ` +
      `when { context.params has bulk } unless { context.override };
  `,
  })

  test('a read-annotated permit makes a write-sounding tool a read', () => {
    const r = engine.evaluate(req('crm.sync'))
    assert.equal(r.decision, 'allow')
    assert.equal(r.actionClass, 'read')
    assert.equal(isReadAction('crm.sync', r), true)
  })

  test('a write-annotated permit makes a read-sounding tool a write', () => {
    const r = engine.evaluate(req('crm.get_and_lock'))
    assert.equal(r.actionClass, 'write')
    assert.equal(isReadAction('crm.get_and_lock', r), false)
  })

  test('write wins over read among the determining policies', () => {
    const r = engine.evaluate(req('kb.mixed'))
    assert.deepEqual([...r.policyIds].sort(), ['both-read', 'both-write'])
    assert.equal(r.actionClass, 'write')
  })

  test('no annotation leaves actionClass unset (the tool-name rule applies)', () => {
    const r = engine.evaluate(req('crm.read'))
    assert.equal(r.actionClass, undefined)
    assert.equal(isReadAction('crm.read', r), true)
  })

  test('sanitize keeps the class; an approval forbid that determines the decision gives its own', () => {
    assert.equal(engine.evaluate(req('crm.lookup', { ssn: '1' })).actionClass, 'read')
    const a = engine.evaluate(req('crm.lookup', { bulk: true }))
    assert.equal(a.decision, 'approval_needed')
    assert.equal(a.actionClass, 'write')
  })

  test('a value other than read or write is refused at upload', () => {
    assert.throws(
      () => analyzeBundle('@action_class("delete") permit(principal, action, resource);'),
      (e: unknown) => e instanceof CedarSyntaxError && /@action_class accepts "read" or "write"/.test(e.message),
    )
    assert.equal(analyzeBundle('@action_class("read") permit(principal, action, resource);').policies[0]!.meta.actionClass, 'read')
  })
})
