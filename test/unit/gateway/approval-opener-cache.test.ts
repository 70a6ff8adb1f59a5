import { test } from 'node:test'
import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import { cachingApprovalOpener, type ApprovalOpener, type OpenApprovalBody } from '../../../src/gateway/approvals/hook.js'

const body = (params: Record<string, unknown>): OpenApprovalBody => ({
  tenant: 'acme',
  agent_id: 'billing-bot',
  client_id: 'bc_1',
  tool: 'payments.transfer',
  params,
  resource: 'account:ops',
  policy_id: 'transfer-approval',
  policy_version: 'v1',
  group: 'finance',
  require_console: false,
  mask: [],
})

function countingOpener(fail = false): ApprovalOpener & { calls: number } {
  const o = {
    calls: 0,
    async open(b: OpenApprovalBody) {
      o.calls++
      await sleep(5)
      if (fail) throw new Error('control plane unreachable')
      return { id: `apr_${o.calls}`, status_url: `http://cp/v1/approvals/apr_${o.calls}?${b.tool}` }
    },
  }
  return o
}

test('identical approval asks share one control-plane call, concurrent or repeated', async () => {
  const inner = countingOpener()
  const opener = cachingApprovalOpener(inner, 60_000)
  const refs = await Promise.all(Array.from({ length: 20 }, () => opener.open(body({ amount: 5000, currency: 'EUR' }))))
  assert.equal(inner.calls, 1)
  assert.ok(refs.every((r) => r.id === 'apr_1'))
  // Key order does not matter (RFC 8785 canonical form); other parameters are another action.
  assert.equal((await opener.open(body({ currency: 'EUR', amount: 5000 }))).id, 'apr_1')
  assert.equal((await opener.open(body({ amount: 5001, currency: 'EUR' }))).id, 'apr_2')
  assert.equal(inner.calls, 2)
})

test('refusals are not remembered, and entries lapse after the TTL', async () => {
  const failing = countingOpener(true)
  const opener = cachingApprovalOpener(failing, 60_000)
  await assert.rejects(opener.open(body({ amount: 1 })))
  await assert.rejects(opener.open(body({ amount: 1 })))
  assert.equal(failing.calls, 2)

  const inner = countingOpener()
  const short = cachingApprovalOpener(inner, 30)
  await short.open(body({ amount: 2 }))
  await sleep(80)
  await short.open(body({ amount: 2 }))
  assert.equal(inner.calls, 2)
})

test('an approval whose override was used is not handed out again: the same ask opens a new request', async () => {
  const inner = countingOpener()
  const opener = cachingApprovalOpener(inner, 60_000)
  const first = await opener.open(body({ amount: 5000, currency: 'EUR' }))
  assert.equal((await opener.open(body({ amount: 5000, currency: 'EUR' }))).id, first.id)
  opener.forget!(first.id)
  const second = await opener.open(body({ amount: 5000, currency: 'EUR' }))
  assert.notEqual(second.id, first.id)
  assert.equal(inner.calls, 2)
  // Forgetting an unknown or already forgotten approval changes nothing.
  opener.forget!(first.id)
  opener.forget!('apr_unknown')
  assert.equal((await opener.open(body({ amount: 5000, currency: 'EUR' }))).id, second.id)
  assert.equal(inner.calls, 2)
})
