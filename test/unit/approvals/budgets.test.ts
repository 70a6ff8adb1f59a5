import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { belowBound, matchBudget, parseBudgets, resolvePointer } from '../../../src/control-plane/approvals/budgets.js'

const good = {
  name: 'small',
  tenant: 'acme',
  tool: 'payments.transfer',
  group: 'finance',
  auto_approve_below: { param: '/params/amount', max: 1000 },
  per_day: 5,
}

describe('approval budgets', () => {
  test('a valid budget parses', () => {
    assert.deepEqual(parseBudgets([good]), [
      { name: 'small', tenant: 'acme', tool: 'payments.transfer', group: 'finance', param: '/params/amount', max: 1000, perDay: 5 },
    ])
    assert.deepEqual(parseBudgets(undefined), [])
  })

  test('every problem is reported at once', () => {
    assert.throws(
      () => parseBudgets([{ ...good, per_day: 0, auto_approve_below: { param: 'amount', max: 'x' }, extra: 1 }, good, good]),
      (e: Error) =>
        /per_day must be an integer/.test(e.message) &&
        /param must be a JSON pointer under \/params\//.test(e.message) &&
        /max must be a finite number/.test(e.message) &&
        /unknown key "extra"/.test(e.message) &&
        /"small" is used twice/.test(e.message),
    )
    assert.throws(() => parseBudgets({}), /must be a JSON array/)
  })

  test('matching uses tenant, tool and group, with "*"', () => {
    const [b] = parseBudgets([{ ...good, tenant: '*' }])
    assert.equal(matchBudget([b!], { tenant: 'globex', tool: 'payments.transfer', group: 'finance' }), b)
    assert.equal(matchBudget([b!], { tenant: 'globex', tool: 'payments.refund', group: 'finance' }), null)
    assert.equal(matchBudget([b!], { tenant: 'acme', tool: 'payments.transfer', group: 'ops' }), null)
  })

  test('only a number strictly below the bound qualifies', () => {
    const [b] = parseBudgets([good])
    assert.deepEqual(belowBound(b!, { amount: 999.99 }), { ok: true, value: 999.99 })
    assert.equal(belowBound(b!, { amount: 1000 }).ok, false)
    assert.equal(belowBound(b!, { amount: '10' }).ok, false)
    assert.equal(belowBound(b!, {}).ok, false)
    assert.equal(belowBound(b!, { amount: -5 }).ok, true)
  })

  test('RFC 6901 pointers resolve escapes and array indexes, and never the prototype', () => {
    const doc = { params: { 'a/b': { '~x': [10, 20] } } }
    assert.equal(resolvePointer(doc, '/params/a~1b/~0x/1'), 20)
    assert.equal(resolvePointer(doc, '/params/a~1b/~0x/01'), undefined)
    assert.equal(resolvePointer(doc, '/params/constructor'), undefined)
    assert.equal(resolvePointer(doc, 'params'), undefined)
  })
})
