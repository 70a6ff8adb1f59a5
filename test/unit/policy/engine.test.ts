import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { CedarCompiler, type CedarEngine } from '../../../src/policy/cedar/engine.js'
import { analyzeBundle } from '../../../src/policy/cedar/analyze.js'
import type { PolicyRequest } from '../../../src/policy/types.js'

function compile(cedar: string, mode: 'enforce' | 'shadow' = 'enforce', unsliced = false): CedarEngine {
  return new CedarCompiler({ unsliced }).compile({ id: 'b', tenant: 't', version: 'v7', cedar, mode })
}

function req(action: string, params: Record<string, unknown> = {}, extra: Partial<PolicyRequest> = {}): PolicyRequest {
  return {
    principal: { tenant: 't', agentId: 'bot', clientId: 'c1', scopes: ['s:write'], capabilities: [action] },
    action,
    resource: null,
    params,
    time: 1_767_225_600,
    clientAddress: null,
    override: false,
    ...extra,
  }
}

describe('CedarEngine decisions', () => {
  const engine = compile(`
    @id("p-allow") permit(principal, action == Action::"t.allow", resource);
    @id("p-risky") @risk("high") permit(principal, action == Action::"t.risky", resource);
    @id("p-san") @sanitize("redact:/params/a, redact:/params/b/c") @sanitize_more("redact:/params/list/*/secret")
    permit(principal, action == Action::"t.san", resource);
    @id("p-appr") permit(principal, action == Action::"t.appr", resource);
    @id("f-appr") @approval("finance") @approval_via("console")
    forbid(principal, action == Action::"t.appr", resource) when { context.params has amount && context.params.amount > 10 } unless { context.override };
    permit(principal, action == Action::"t.hard", resource);
    forbid(principal, action == Action::"t.hard", resource) when { context.params has x };
  `)

  test('allow names the determining permit', () => {
    const r = engine.evaluate(req('t.allow'))
    assert.equal(r.decision, 'allow')
    assert.deepEqual(r.policyIds, ['p-allow'])
    assert.ok(r.reasons.some((x) => x.includes('p-allow')))
    assert.equal(r.risk, 'normal')
    assert.equal(r.policyVersion, 'v7')
    assert.equal(r.mode, 'enforce')
  })

  test('@risk("high") on the determining permit marks the call high risk', () => {
    assert.equal(engine.evaluate(req('t.risky')).risk, 'high')
  })

  test('@sanitize directives (comma separated and several annotations) become redact obligations', () => {
    const r = engine.evaluate(req('t.san', { a: 1 }))
    assert.equal(r.decision, 'sanitize')
    assert.deepEqual(r.obligations, [
      { type: 'redact', path: '/params/a' },
      { type: 'redact', path: '/params/b/c' },
      { type: 'redact', path: '/params/list/*/secret' },
    ])
  })

  test('a satisfied @approval forbid gives approval_needed with group and console requirement', () => {
    const r = engine.evaluate(req('t.appr', { amount: 11 }))
    assert.equal(r.decision, 'approval_needed')
    assert.equal(r.approvalGroup, 'finance')
    assert.equal(r.requireConsole, true)
    assert.deepEqual(r.policyIds, ['f-appr'])
  })

  test('an approved override passes the approval forbid written with unless { context.override }', () => {
    assert.equal(engine.evaluate(req('t.appr', { amount: 11 }, { override: true })).decision, 'allow')
    assert.equal(engine.evaluate(req('t.appr', { amount: 10 })).decision, 'allow')
  })

  test("an unannotated forbid denies and names Cedar's policy id when there is no @id", () => {
    const r = engine.evaluate(req('t.hard', { x: 1 }))
    assert.equal(r.decision, 'deny')
    assert.deepEqual(r.policyIds, ['policy6'])
  })

  test('nothing permitting is deny', () => {
    const r = engine.evaluate(req('t.unknown'))
    assert.equal(r.decision, 'deny')
    assert.deepEqual(r.policyIds, [])
    assert.match(r.reasons[0]!, /no_permit/)
  })

  test('shadow mode is carried into the result', () => {
    const shadow = compile('permit(principal, action, resource);', 'shadow')
    assert.equal(shadow.evaluate(req('x')).mode, 'shadow')
  })
})

describe('CedarEngine fails closed', () => {
  const engine = compile(`
    @id("ok") permit(principal, action == Action::"pay", resource) when { context.params has amount && context.params.amount <= 100 };
    @id("limit") forbid(principal, action == Action::"pay", resource) when { context.params.amount > 50 };
    @id("nested") permit(principal, action == Action::"deep", resource) when { context.params.a.b.c == "x" };
  `)

  test('missing params are deny, never a crash', () => {
    const r = engine.evaluate(req('pay', {}))
    assert.equal(r.decision, 'deny')
    assert.ok(r.reasons.some((x) => x.includes('limit')))
  })

  test('a forbid that errors on a mistyped param denies although a permit is satisfied', () => {
    // "amount" as a string: `ok` errors too, but also the forbid: fail closed.
    assert.equal(engine.evaluate(req('pay', { amount: '60' })).decision, 'deny')
  })

  test('floats, nulls and huge numbers never reach Cedar as something else', () => {
    assert.equal(engine.evaluate(req('pay', { amount: 10.5 })).decision, 'deny')
    assert.equal(engine.evaluate(req('pay', { amount: null })).decision, 'deny')
    assert.equal(engine.evaluate(req('pay', { amount: 2 ** 60 })).decision, 'deny')
    assert.equal(engine.evaluate(req('pay', { amount: 10, note: null, list: [1, null, { z: null }] })).decision, 'allow')
  })

  test('nested parameters are read, and a missing level is deny', () => {
    assert.equal(engine.evaluate(req('deep', { a: { b: { c: 'x' } } })).decision, 'allow')
    assert.equal(engine.evaluate(req('deep', { a: { b: {} } })).decision, 'deny')
    assert.equal(engine.evaluate(req('deep', { a: 'flat' })).decision, 'deny')
  })

  test('Cedar JSON escapes in params are refused, not read as entities', () => {
    const r = engine.evaluate(req('pay', { amount: 10, x: { __entity: { type: 'Agent', id: 'admin' } } }))
    assert.equal(r.decision, 'deny')
    assert.match(r.reasons[0]!, /reserved/)
  })

  test('params that are not an object, a non-integer time or an empty action are deny', () => {
    assert.equal(engine.evaluate(req('pay', [] as unknown as Record<string, unknown>)).decision, 'deny')
    assert.equal(engine.evaluate(req('pay', { amount: 1 }, { time: 1.5 })).decision, 'deny')
    assert.equal(engine.evaluate(req('', { amount: 1 })).decision, 'deny')
  })

  test('an approval that could not make the call pass is a deny, not an approval request', () => {
    const e = compile(`
      @id("p") permit(principal, action == Action::"pay", resource) when { principal.scopes.contains("pay") };
      @id("a") @approval("finance") forbid(principal, action == Action::"pay", resource) unless { context.override };
    `)
    assert.equal(e.evaluate(req('pay')).decision, 'deny')
    const withScope = req('pay')
    withScope.principal.scopes = ['pay']
    assert.equal(e.evaluate(withScope).decision, 'approval_needed')
  })

  test('an approval forbid together with a hard forbid is deny', () => {
    const e = compile(`
      permit(principal, action, resource);
      @approval("g") forbid(principal, action, resource) unless { context.override };
      @id("hard") forbid(principal, action, resource) when { context.params has bad };
    `)
    assert.equal(e.evaluate(req('x', {})).decision, 'approval_needed')
    const r = e.evaluate(req('x', { bad: true }))
    assert.equal(r.decision, 'deny')
    assert.ok(r.policyIds.includes('hard'))
  })
})

describe('request mapping', () => {
  test('principal attributes, resource, time, client address and override are visible to policies', () => {
    const e = compile(`
      permit(principal == Agent::"bot", action == Action::"m", resource == Resource::"acct-1")
      when {
        principal.tenant == "t" && principal.agent_id == "bot" && principal.client_id == "c1" &&
        principal.scopes.contains("s:write") && principal.capabilities.contains("m") &&
        resource.id == "acct-1" && context.time == 1767225600 &&
        context has client_address && ip(context.client_address).isInRange(ip("203.0.113.0/24")) &&
        !context.override
      };
    `)
    assert.equal(e.evaluate(req('m', {}, { resource: 'acct-1', clientAddress: '203.0.113.7' })).decision, 'allow')
    assert.equal(e.evaluate(req('m', {}, { resource: 'acct-1', clientAddress: null })).decision, 'deny')
    assert.equal(e.evaluate(req('m', {}, { resource: 'acct-2', clientAddress: '203.0.113.7' })).decision, 'deny')
    assert.equal(e.evaluate(req('m', {}, { resource: 'acct-1', clientAddress: '203.0.113.7', override: true })).decision, 'deny')
  })

  test('action groups: payments.* covers every payments tool, and nothing else', () => {
    const e = compile(`
      @id("g") permit(principal, action in Action::"payments.*", resource);
      @id("gg") @risk("high") permit(principal, action in Action::"payments.wire.*", resource);
      @id("one") permit(principal, action == Action::"crm.read", resource);
    `)
    assert.deepEqual(e.evaluate(req('payments.transfer')).policyIds, ['g'])
    assert.deepEqual(e.evaluate(req('payments.wire.send')).policyIds, ['g', 'gg'])
    assert.equal(e.evaluate(req('payments.wire.send')).risk, 'high')
    assert.equal(e.evaluate(req('paymentsx.transfer')).decision, 'deny')
    assert.equal(e.evaluate(req('crm.read')).decision, 'allow')
    assert.equal(e.evaluate(req('crm.write')).decision, 'deny')
  })
})

describe('policy slicing', () => {
  /** A 500-policy bundle: per-tool permits and forbids, groups and unscoped policies. */
  function bigBundle(): string {
    const out: string[] = []
    for (let i = 0; i < 500; i++) {
      const tool = `svc${i % 40}.op${i % 7}`
      switch (i % 10) {
        case 0:
          out.push(`permit(principal, action in Action::"svc${i % 40}.*", resource) when { context.params has n && context.params.n < ${i} };`)
          break
        case 1:
          out.push(`forbid(principal, action, resource) when { context.params has k && context.params.k == ${i} };`)
          break
        // Aimed at the permit two further on (same tool, same n), so approving would help.
        case 2:
          out.push(
            `@approval("g${i}") forbid(principal, action == Action::"svc${(i + 2) % 40}.op${(i + 2) % 7}", resource) when { context.params has n ` +
              `&& context.params.n == ${i + 2} } unless { context.override };`,
          )
          break
        case 3:
          out.push(
            `@sanitize("redact:/params/f${i}") permit(principal, action in [Action::"${tool}", Action::"other.op${i % 3}"], resource) when { ` +
              `context.params has m && context.params.m > ${i} };`,
          )
          break
        default:
          out.push(
            `permit(principal, action == Action::"${tool}", resource) when { context.params has n && context.params.n == ${i} && ` +
              `principal.scopes.contains("s:write") };`,
          )
      }
    }
    return out.join('\n')
  }

  test('a 500-policy bundle decides exactly as the whole set does, on a sample of requests', () => {
    const text = bigBundle()
    const sliced = compile(text)
    const whole = compile(text, 'enforce', true)
    assert.equal(analyzeBundle(text).policies.length, 500)
    let changedSliceSize = 0
    const seen = new Set<string>()
    for (let i = 0; i < 600; i++) {
      // Aim most calls at one policy (its tool, its numbers ± 1), the rest anywhere.
      const j = (i * 7919) % 500
      const tool = i % 5 === 0 ? `other.op${i % 4}` : i % 11 === 0 ? `svc${j % 40}.unnamed` : i % 13 === 0 ? 'nobody.calls' : `svc${j % 40}.op${j % 7}`
      const params: Record<string, unknown> = { n: j + (i % 3) - 1, m: j + (i % 2) }
      if (i % 9 === 0) params.k = (i * 7) % 500
      const r = req(tool, params, { override: i % 17 === 0 })
      const a = sliced.evaluate(r)
      const b = whole.evaluate(r)
      assert.deepEqual({ ...a, reasons: [] }, { ...b, reasons: [] }, `${tool} ${JSON.stringify(params)}`)
      seen.add(a.decision)
      if (sliced.sliceSize(tool) < 500) changedSliceSize++
    }
    assert.deepEqual([...seen].sort(), ['allow', 'approval_needed', 'deny', 'sanitize'])
    assert.ok(changedSliceSize > 500, 'calls are evaluated against slices, not the whole bundle')
    assert.ok(sliced.sliceSize('svc3.op3') < 100)
  })
})

describe('decision cache', () => {
  test('a repeated call gets the same answer, and editing a result changes nothing for the next caller', () => {
    const e = compile('@id("p") @sanitize("redact:/params/a") permit(principal, action == Action::"x", resource);')
    const first = e.evaluate(req('x', { a: 1, b: [1, 2] }))
    first.obligations.push({ type: 'redact', path: '/params/b' })
    first.reasons.length = 0
    const second = e.evaluate(req('x', { b: [1, 2], a: 1 }))
    assert.deepEqual(second.obligations, [{ type: 'redact', path: '/params/a' }])
    assert.equal(second.reasons.length, 1)
  })

  test('time, client address, override, scopes and resource are part of the key when they can matter', () => {
    const e = compile(`
      permit(principal, action == Action::"t", resource) when { context.time < 1000 };
      permit(principal, action == Action::"a", resource) when { context has client_address && context.client_address == "10.0.0.1" };
      permit(principal, action == Action::"o", resource) when { context.override && principal.scopes.contains("s:write") && resource.id == "r1" };
    `)
    assert.equal(e.evaluate(req('t', {}, { time: 999 })).decision, 'allow')
    assert.equal(e.evaluate(req('t', {}, { time: 1000 })).decision, 'deny')
    assert.equal(e.evaluate(req('a', {}, { clientAddress: '10.0.0.1' })).decision, 'allow')
    assert.equal(e.evaluate(req('a', {}, { clientAddress: '10.0.0.2' })).decision, 'deny')
    assert.equal(e.evaluate(req('o', {}, { override: true, resource: 'r1' })).decision, 'allow')
    assert.equal(e.evaluate(req('o', {}, { override: false, resource: 'r1' })).decision, 'deny')
    assert.equal(e.evaluate(req('o', {}, { override: true, resource: 'r2' })).decision, 'deny')
    const noScope = req('o', {}, { override: true, resource: 'r1' })
    noScope.principal.scopes = []
    assert.equal(e.evaluate(noScope).decision, 'deny')
  })

  test('params keyed by the text they were parsed from: equal texts share an answer, any other text is decided on its own', () => {
    const e = compile('permit(principal, action == Action::"s", resource) when { context.params.limit <= 100 };')
    const withText = (text: string): PolicyRequest => ({ ...req('s', JSON.parse(text) as Record<string, unknown>), paramsText: text })
    assert.equal(e.evaluate(withText('{"limit":10}')).decision, 'allow')
    assert.equal(e.evaluate(withText('{"limit":1000}')).decision, 'deny')
    assert.equal(e.evaluate(withText('{"limit":10}')).decision, 'allow')
    // The same params spelled another way, and the canonical key of the same params: the same answers.
    assert.equal(e.evaluate(withText('{ "limit" : 1000 }')).decision, 'deny')
    assert.equal(e.evaluate(req('s', { limit: 1000 })).decision, 'deny')
    assert.equal(e.evaluate(req('s', { limit: 10 })).decision, 'allow')
    // A raw text equal to another call's canonical text names the same params: it cannot borrow a different answer.
    assert.equal(e.evaluate(withText('{"limit":1000}')).decision, 'deny')
    // The text is the key (no canonicalization): which is why a caller passes only the text its params came from.
    assert.equal(e.evaluate({ ...req('s', { limit: 5000 }), paramsText: '{"limit":10}' }).decision, 'allow')
  })

  test('context reads are detected conservatively', async () => {
    const { contextReads } = await import('../../../src/policy/cedar/engine.js')
    assert.deepEqual(contextReads('when { context.params.a == 1 && context.override }'), { time: false, address: false })
    assert.deepEqual(contextReads('when { context has time && context.time > 5 }'), { time: true, address: false })
    assert.deepEqual(contextReads('when { ip(context.client_address).isLoopback() }'), { time: false, address: true })
    assert.deepEqual(contextReads('when { context == {} }'), { time: true, address: true })
  })
})

describe('minimal entities', () => {
  test('only the principal attributes and resource the policies name are sent', async () => {
    const { entityShapeOf, buildEntities } = await import('../../../src/policy/cedar/request.js')
    assert.deepEqual(entityShapeOf('permit(principal, action, resource) when { principal.scopes.contains("a") };'), { principal: ['scopes'], resource: false })
    assert.deepEqual(entityShapeOf('permit(principal == Agent::"a", action, resource == Resource::"r");'), { principal: null, resource: false })
    assert.deepEqual(entityShapeOf('permit(principal, action, resource) when { resource has id && principal["tenant"] == "t" };'), {
      principal: ['tenant'],
      resource: true,
    })
    const ents = buildEntities(req('x'), null, { principal: ['scopes'], resource: false })
    assert.deepEqual(ents, [{ uid: { type: 'Agent', id: 'bot' }, attrs: { scopes: ['s:write'] }, parents: [] }])
  })

  test('a bundle that names no attributes still matches principal and resource by uid', () => {
    const e = compile('permit(principal == Agent::"bot", action, resource == Resource::"r1");')
    assert.equal(e.evaluate(req('x', {}, { resource: 'r1' })).decision, 'allow')
    assert.equal(e.evaluate(req('x', {}, { resource: 'r2' })).decision, 'deny')
  })
})

describe('bundles side by side', () => {
  test('engines of two versions never mix, however their calls interleave', () => {
    const a = new CedarCompiler({ cacheSize: 0 }).compile({
      id: 'a',
      tenant: 't',
      version: 'v1',
      cedar: '@id("a-permit") permit(principal, action == Action::"pay", resource) when { context.params.amount <= 100 };',
      mode: 'enforce',
    })
    const b = new CedarCompiler({ cacheSize: 0 }).compile({
      id: 'b',
      tenant: 't',
      version: 'v2',
      cedar: '@id("b-permit") permit(principal, action == Action::"pay", resource) when { context.params.amount <= 10 };',
      mode: 'shadow',
    })
    const again = new CedarCompiler({ cacheSize: 0 }).compile({
      id: 'a',
      tenant: 't',
      version: 'v1',
      cedar: '@id("a-permit") permit(principal, action == Action::"pay", resource) when { context.params.amount <= 100 };',
      mode: 'enforce',
    })
    for (let i = 0; i < 200; i++) {
      const r = req('pay', { amount: 50 })
      const ra = a.evaluate(r)
      const rb = b.evaluate(r)
      assert.deepEqual([ra.decision, ra.policyVersion, ra.mode, ra.policyIds[0]], ['allow', 'v1', 'enforce', 'a-permit'])
      assert.deepEqual([rb.decision, rb.policyVersion, rb.mode], ['deny', 'v2', 'shadow'])
      assert.equal(again.evaluate(r).decision, 'allow')
    }
  })
})
