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

test('JSON depth is measured without recursion', () => {
  let deep: unknown = 1
  for (let i = 0; i < 10_000; i++) deep = [deep]
  assert.ok(jsonDepth(deep, 32) > 32)
  assert.equal(jsonDepth({ a: { b: [1] } }), 3)
})
