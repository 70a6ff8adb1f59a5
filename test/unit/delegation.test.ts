import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { capabilityHash } from '../../src/lib/capability.js'
import { buildContext, delegationShapeOf, FULL_DELEGATION } from '../../src/policy/cedar/request.js'
import { DelegationError, MAX_DELEGATION_DEPTH, actClaim, actorsOf, intersectManifests, readDelegation } from '../../src/lib/delegation.js'

const H = 'A'.repeat(43)

describe('delegation chains in token claims', () => {
  test('act nests outermost = current actor; the chain reads innermost first', () => {
    const act = actClaim(['worker', 'leaf', 'deeper'])
    assert.deepEqual(act, { sub: 'deeper', act: { sub: 'leaf', act: { sub: 'worker' } } })
    assert.deepEqual(actorsOf(act), ['worker', 'leaf', 'deeper'])
    const d = readDelegation({ sub: 'planner', agent_id: 'planner', act, delegation: { hashes: [H, H, H, H] } })
    assert.ok(d)
    assert.deepEqual(d.chain, ['planner', 'worker', 'leaf', 'deeper'])
    assert.equal(d.depth, 3)
    assert.equal(d.user, null)
    assert.deepEqual(d.from, [])
    assert.deepEqual(readDelegation({ sub: 'planner', agent_id: 'planner', act, delegation: { hashes: [H, H, H, H], from: ['j1', 'j2'] } })?.from, ['j1', 'j2'])
  })

  test("a person's chain starts at the token's agent and names the person as sub", () => {
    const d = readDelegation({ sub: 'alice', agent_id: 'bot', act: { sub: 'bot' }, delegation: { hashes: [H], user: 'alice', user_resources: ['acc-1'] } })
    assert.ok(d)
    assert.deepEqual(d.chain, ['bot'])
    assert.equal(d.depth, 1)
    assert.deepEqual(d.userResources, ['acc-1'])
    assert.throws(() => readDelegation({ sub: 'alice', agent_id: 'bot', act: { sub: 'other' }, delegation: { hashes: [H], user: 'alice' } }), DelegationError)
    assert.throws(() => readDelegation({ sub: 'mallory', agent_id: 'bot', act: { sub: 'bot' }, delegation: { hashes: [H], user: 'alice' } }), DelegationError)
  })

  test('malformed, looping, over-deep or inconsistent claims are refused', () => {
    assert.equal(readDelegation({ sub: 'a', agent_id: 'a' }), null)
    const bad: unknown[] = [
      { sub: 'a', agent_id: 'a', delegation: { hashes: [H] } },
      { sub: 'a', agent_id: 'a', act: { sub: 'b' } },
      { sub: 'a', agent_id: 'a', act: { sub: 'a' }, delegation: { hashes: [H, H] } },
      { sub: 'a', agent_id: 'a', act: { sub: 'c', act: { sub: 'b', act: { sub: 'c' } } }, delegation: { hashes: [H, H, H, H] } },
      { sub: 'a', agent_id: 'a', act: { sub: 'b' }, delegation: { hashes: [H] } },
      { sub: 'a', agent_id: 'a', act: { sub: 'b' }, delegation: { hashes: [H, 'short'] } },
      { sub: 'a', agent_id: 'a', act: { sub: 'not an id!' }, delegation: { hashes: [H, H] } },
      { sub: 'a', agent_id: 'a', act: ['b'], delegation: { hashes: [H, H] } },
      { sub: 'x', agent_id: 'a', act: { sub: 'b' }, delegation: { hashes: [H, H] } },
      { sub: 'a', agent_id: 'a', act: { sub: 'b' }, delegation: { hashes: [H, H], user_resources: 'acc' } },
      { sub: 'a', agent_id: 'a', act: { sub: 'b' }, delegation: { hashes: [H, H], from: 'j1' } },
      { sub: 'a', agent_id: 'a', act: { sub: 'b' }, delegation: { hashes: [H, H], from: [''] } },
      { sub: 'a', agent_id: 'a', act: { sub: 'b' }, delegation: { hashes: [H, H], from: [7] } },
      {
        sub: 'a',
        agent_id: 'a',
        act: { sub: 'b' },
        delegation: { hashes: [H, H], from: Array.from({ length: 2 * MAX_DELEGATION_DEPTH + 1 }, (_, i) => `j${i}`) },
      },
    ]
    for (const claims of bad) assert.throws(() => readDelegation(claims as never), DelegationError, JSON.stringify(claims))
    const deep = actClaim(Array.from({ length: MAX_DELEGATION_DEPTH + 1 }, (_, i) => `a${i}`))
    assert.throws(() => actorsOf(deep), /deeper/)
  })

  test('the intersection manifest keeps tools in both, schemas of both, narrowed by a request', () => {
    const a = { capabilities: ['crm.read', 'crm.update', 'mail.send'], schemas: { 'crm.read': { type: 'object' }, 'mail.send': { maxProperties: 3 } } }
    const b = { capabilities: ['mail.send', 'crm.read', 'files.write'], schemas: { 'mail.send': { required: ['to'] } } }
    const m = intersectManifests(a, b)
    assert.deepEqual(m, {
      capabilities: ['crm.read', 'mail.send'],
      schemas: { 'crm.read': { type: 'object' }, 'mail.send': { allOf: [{ maxProperties: 3 }, { required: ['to'] }] } },
    })
    assert.deepEqual(intersectManifests(a, b, new Set(['crm.read'])), { capabilities: ['crm.read'], schemas: { 'crm.read': { type: 'object' } } })
    // Same inputs, same manifest, same hash, whichever the order of tools.
    assert.equal(capabilityHash(intersectManifests(a, b)), capabilityHash(intersectManifests({ ...a, capabilities: [...a.capabilities].reverse() }, b)))
    assert.deepEqual(intersectManifests({ capabilities: ['x'] }, { capabilities: ['y'] }), { capabilities: [] })
  })

  test('Cedar is sent only what of context.delegation a slice names, all of it when used whole', () => {
    assert.equal(delegationShapeOf('permit (principal, action, resource);'), 0)
    const req = {
      principal: { tenant: 't', agentId: 'a', clientId: 'c', scopes: [], capabilities: [] },
      action: 'x',
      resource: null,
      params: {},
      time: 1,
      clientAddress: null,
      override: false,
      delegation: { chain: ['a', 'b'], depth: 1, user: 'alice', userIssuer: 'https://idp', userResources: ['r1'] },
    }
    const guardOnly = delegationShapeOf('forbid (principal, action, resource) when { context has delegation };')
    assert.deepEqual(buildContext(req, guardOnly).delegation, {})
    const some = delegationShapeOf('when { context has delegation && context.delegation has user && context.delegation.user_resources.contains("x") }')
    assert.deepEqual(buildContext(req, some).delegation, { user: 'alice', user_resources: ['r1'] })
    assert.equal(delegationShapeOf('when { context has delegation && context.delegation == context.params.d }'), FULL_DELEGATION)
    assert.equal(delegationShapeOf('when { context["delegation"] == context.params.d }'), FULL_DELEGATION)
    assert.deepEqual(buildContext(req).delegation, {
      chain: ['a', 'b'],
      depth: 1,
      origin: 'a',
      actor: 'b',
      user: 'alice',
      user_issuer: 'https://idp',
      user_resources: ['r1'],
    })
    assert.equal(buildContext(req, 0).delegation, undefined)
  })
})
