import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { applyObligations, parsePointer, REDACTED } from '../../../src/policy/sanitize.js'
import type { Obligation } from '../../../src/policy/types.js'

const redact = (...paths: string[]): Obligation[] => paths.map((path) => ({ type: 'redact', path }))

describe('applyObligations', () => {
  test('redacts top-level and nested values without mutating the input', () => {
    const params = { card_number: '4111', card: { number: '4111', exp: '12/30' }, amount: 5 }
    const frozen = structuredClone(params)
    const out = applyObligations({ params, resource: null }, redact('/params/card_number', '/params/card/number')).params
    assert.deepEqual(out, { card_number: REDACTED, card: { number: REDACTED, exp: '12/30' }, amount: 5 })
    assert.deepEqual(params, frozen)
    assert.notEqual(out, params)
  })

  test('missing paths, pointers outside /params and malformed pointers change nothing', () => {
    const params = { a: { b: 1 } }
    const out = applyObligations({ params }, redact('/params/x', '/params/a/b/c', '/resource', 'params/a', '/params/a~2', '/params')).params
    assert.equal(out, params)
  })

  test('array indexes and the * wildcard over array elements', () => {
    const params = { items: [{ pan: '1', n: 1 }, { pan: '2' }, { n: 3 }], list: ['a', 'b'] }
    const out = applyObligations({ params }, redact('/params/items/*/pan', '/params/list/1', '/params/list/7', '/params/list/-')).params
    assert.deepEqual(out, { items: [{ pan: REDACTED, n: 1 }, { pan: REDACTED }, { n: 3 }], list: ['a', REDACTED] })
    assert.equal(params.items[0]!.pan, '1')
  })

  test('RFC 6901 escapes: ~1 is / and ~0 is ~', () => {
    assert.deepEqual(parsePointer('/params/a~1b/c~0d'), ['params', 'a/b', 'c~d'])
    const out = applyObligations({ params: { 'a/b': 1, 'c~d': 2, '*': 3 } }, redact('/params/a~1b', '/params/c~0d', '/params/*')).params
    assert.deepEqual(out, { 'a/b': REDACTED, 'c~d': REDACTED, '*': REDACTED })
  })

  test('redacting a whole object subtree and a __proto__ key stays a plain property', () => {
    const params = JSON.parse('{"patient": {"ssn": "1", "name": "x"}, "__proto__": {"polluted": true}}') as Record<string, unknown>
    const out = applyObligations({ params }, redact('/params/patient', '/params/__proto__')).params
    assert.equal(out.patient, REDACTED)
    assert.equal(Object.getOwnPropertyDescriptor(out, '__proto__')?.value, REDACTED)
    assert.equal(({} as Record<string, unknown>).polluted, undefined)
  })
})
