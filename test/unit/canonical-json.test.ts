import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { canonicalJson } from '../../src/lib/canonical-json.js'
import { buildManifest, capabilityHash } from '../../src/lib/capability.js'
import { constantTimeEqual } from '../../src/lib/hash.js'
import { jsonDepth } from '../../src/lib/json-limits.js'

test('canonical JSON follows RFC 8785: sorted keys, ES number form, minimal escapes', () => {
  assert.equal(canonicalJson({ b: 1, a: [3, { d: 1e21, c: 'é\n' }] }), '{"a":[3,{"c":"é\\n","d":1e+21}],"b":1}')
  assert.equal(canonicalJson({ n: 1.0, m: -0, s: '\u2028' }), '{"m":0,"n":1,"s":"\u2028"}')
})

test('capability_hash covers sorted, deduplicated tool names and schemas only when registered', () => {
  const m = buildManifest(['crm.read', 'payments.transfer', 'crm.read'])
  assert.deepEqual(m, { capabilities: ['crm.read', 'payments.transfer'] })
  const expected = createHash('sha256').update('{"capabilities":["crm.read","payments.transfer"]}').digest('base64url')
  assert.equal(capabilityHash(m), expected)
  assert.equal(capabilityHash(buildManifest(['payments.transfer', 'crm.read'], {})), expected)
  assert.notEqual(capabilityHash(buildManifest(['crm.read'], { 'crm.read': { type: 'object' } })), capabilityHash(buildManifest(['crm.read'])))
})

test('constant-time comparison answers equality correctly for any lengths', () => {
  assert.equal(constantTimeEqual('abc', 'abc'), true)
  assert.equal(constantTimeEqual('abc', 'abd'), false)
  assert.equal(constantTimeEqual('abc', 'abcd'), false)
})

test('JSON depth stops descending past the limit, so any nesting is measured safely', () => {
  let deep: unknown = 1
  for (let i = 0; i < 1_000_000; i++) deep = [deep]
  assert.equal(jsonDepth(deep, 32), 33)
  let deepObject: unknown = {}
  for (let i = 0; i < 100_000; i++) deepObject = { a: deepObject }
  assert.ok(jsonDepth(deepObject, 8) > 8)
})

test('JSON depth counts containers with members; scalars and empty containers are 0', () => {
  assert.equal(jsonDepth({ a: { b: [1] } }), 3)
  assert.equal(jsonDepth('x'), 0)
  assert.equal(jsonDepth(null), 0)
  assert.equal(jsonDepth({}), 0)
  assert.equal(jsonDepth([]), 0)
  assert.equal(jsonDepth([[]]), 1)
  assert.equal(jsonDepth({ a: 1, b: { c: [] } }), 2)
  assert.equal(jsonDepth([1, [2, [3]], { x: {} }]), 3)
  assert.equal(jsonDepth({ a: { b: { c: 1 } } }, 2), 3)
})
