import { test } from 'node:test'
import assert from 'node:assert/strict'
import { isReadAction } from '../../../src/gateway/pipeline/action-class.js'
import type { PolicyResult } from '../../../src/policy/types.js'

const base: PolicyResult = { decision: 'allow', reasons: [], policyIds: [], obligations: [], risk: 'normal', policyVersion: 'v', mode: 'enforce' }

test('reads are tools whose last segment starts with read/get/list/search, unless high-risk or annotated', () => {
  for (const t of ['crm.read', 'crm.get_contact', 'files.list', 'kb/search', 'crm:read', 'read', 'CRM.Get']) assert.equal(isReadAction(t, base), true, t)
  for (const t of ['crm.update', 'payments.transfer', 'reader.delete', 'crm.spread']) assert.equal(isReadAction(t, base), false, t)
  assert.equal(isReadAction('crm.read', { ...base, risk: 'high' }), false)
  assert.equal(isReadAction('crm.read', { ...base, actionClass: 'write' }), false)
  assert.equal(isReadAction('crm.export', { ...base, actionClass: 'read' }), true)
})
