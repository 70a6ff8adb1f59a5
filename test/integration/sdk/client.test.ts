/**
 * AegisClient against the real control plane and gateway: decisions, dry
 * run, invalid_token → one refresh + one retry, approvals followed to their
 * override, and an outage of the control plane ridden out at the gateway.
 */
import { test, describe, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { decodeJwt } from 'jose'
import { AegisClient, AegisSdkError, type AuthorizeResult } from '../../../src/sdk/index.js'
import { TENANT, startAegis, type Aegis, type Credential } from './helpers/roles.js'

const CEDAR = `
@id("crm-read")
permit (principal, action == Action::"crm.read", resource)
when { principal.scopes.contains("crm:read") };

@id("transfer-permit")
permit (principal, action == Action::"payments.transfer", resource)
when { principal.scopes.contains("payments:write") };

@id("transfer-approval")
@approval("finance")
@reason("transfers above 1000 need a finance approver")
forbid (principal, action == Action::"payments.transfer", resource)
when { context.params has amount && context.params.amount > 1000 }
unless { context.override };
`

let aegis: Aegis
let approverToken = ''
const clients: AegisClient[] = []

before(async () => {
  aegis = await startAegis({ gateway: true, cedar: CEDAR })
  approverToken = String(
    (await aegis.admin('POST', '/admin-tokens', { tenant: TENANT, role: 'approver', name: 'finance-approver', groups: ['finance'] })).token,
  )
})
after(async () => {
  for (const c of clients) c.close()
  await aegis.close()
})

async function newClient(extra: Partial<ConstructorParameters<typeof AegisClient>[0]> = {}): Promise<AegisClient & { cred: Credential }> {
  const cred = await aegis.credential()
  const c = new AegisClient({ issuer: aegis.issuer, clientId: cred.client_id, clientSecret: cred.client_secret, gatewayUrl: aegis.gatewayUrl, ...extra })
  clients.push(c)
  return Object.assign(c, { cred })
}

async function issuedFor(clientId: string): Promise<number> {
  await new Promise((r) => setTimeout(r, 0))
  const page = await aegis.cp.deps.store.audit.query({ type: 'token.issued', tenant: TENANT, limit: 10_000 })
  return page.filter((e) => e.data.client_id === clientId).length
}

async function pendingApproval(amount: number): Promise<string> {
  let id: string | undefined
  for (let i = 0; i < 500 && !id; i++) {
    const res = await fetch(`${aegis.issuer}/admin/v1/approvals?status=pending`, { headers: { authorization: `Bearer ${approverToken}` } })
    const body = (await res.json()) as { approvals: Array<{ id: string; params: { amount?: number } }> }
    id = body.approvals.find((a) => a.params.amount === amount)?.id
    if (!id) await new Promise((r) => setTimeout(r, 20))
  }
  assert.ok(id, 'the call opened an approval request')
  return id
}

async function decide(id: string, verdict: 'approve' | 'deny'): Promise<void> {
  const res = await fetch(`${aegis.issuer}/admin/v1/approvals/${id}/${verdict}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${approverToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ reason: 'sdk test' }),
  })
  assert.equal(res.status, 200, await res.text())
}

describe('AegisClient.authorize through the real gateway', () => {
  test('an allowed call comes back as a typed, enforced allow', async () => {
    const c = await newClient()
    const d = await c.authorize({ tool: 'crm.read', params: { id: '42' } })
    assert.equal(d.decision, 'allow')
    assert.equal(d.enforced, true)
    assert.equal(typeof d.policy_version, 'string')
    assert.ok(Array.isArray(d.reasons))
  })

  test('a tool outside the capability manifest is denied', async () => {
    const c = await newClient()
    const d = await c.authorize({ tool: 'crm.delete', params: { id: '42' } })
    assert.equal(d.decision, 'deny')
  })

  test('client-wide dry run: Aegis-Dry-Run is honoured (not enforced, no approval opened) and the callback sees it', async () => {
    const seen: AuthorizeResult[] = []
    const c = await newClient({ dryRun: true, onDryRunDecision: (d) => seen.push(d) })
    const d = await c.authorize({ tool: 'payments.transfer', params: { amount: 4321, currency: 'EUR' } }, { waitForApproval: true })
    assert.equal(d.decision, 'approval_needed')
    assert.equal(d.enforced, false)
    assert.equal(seen.length, 1)
    assert.equal(seen[0]!.decision, 'approval_needed')
    const res = await fetch(`${aegis.issuer}/admin/v1/approvals?status=pending`, { headers: { authorization: `Bearer ${approverToken}` } })
    const body = (await res.json()) as { approvals: Array<{ params: { amount?: number } }> }
    assert.ok(!body.approvals.some((a) => a.params.amount === 4321), 'a dry run opens no approval')
    const denied = await c.authorize({ tool: 'crm.delete' })
    assert.equal(denied.decision, 'deny')
    assert.equal(denied.enforced, false)
    assert.equal(seen.length, 2)
  })

  test('a revoked token: the gateway answers invalid_token, the client refreshes once and retries once', async () => {
    const c = await newClient()
    const first = await c.getToken()
    assert.equal((await c.authorize({ tool: 'crm.read' })).decision, 'allow')
    await aegis.admin('POST', '/revocations', { type: 'jti', value: String(decodeJwt(first).jti), tenant: TENANT, reason: 'sdk test' })
    // Wait until the gateway refuses the old token (the revocation feed is asynchronous).
    for (let i = 0; i < 200; i++) {
      const res = await fetch(`${aegis.gatewayUrl}/v1/authorize`, {
        method: 'POST',
        headers: { authorization: `Bearer ${first}`, 'content-type': 'application/json' },
        body: JSON.stringify({ action: { tool: 'crm.read' } }),
      })
      await res.body?.cancel()
      if (res.status === 401) break
      await new Promise((r) => setTimeout(r, 10))
    }
    assert.equal(await issuedFor(c.cred.client_id), 1)
    const d = await c.authorize({ tool: 'crm.read' })
    assert.equal(d.decision, 'allow')
    assert.notEqual(await c.getToken(), first)
    assert.equal(await issuedFor(c.cred.client_id), 2, 'exactly one refresh')
  })

  test('a second invalid_token after the refresh is an error, not a loop', async () => {
    const c = await newClient()
    await c.getToken()
    await aegis.admin('POST', '/revocations', { type: 'client', value: c.cred.client_id, tenant: TENANT, reason: 'sdk test' })
    // The credential itself is revoked now: the refresh fails, or the new token is refused.
    await new Promise((r) => setTimeout(r, 200))
    await assert.rejects(
      c.authorize({ tool: 'crm.read' }),
      (err: unknown) => err instanceof AegisSdkError && (err.code === 'invalid_token' || err.code === 'invalid_client' || err.code === 'invalid_grant'),
    )
    assert.ok((await issuedFor(c.cred.client_id)) <= 2)
  })
})

describe('approvals through the real gateway and control plane', () => {
  test('waitForApproval: approved → the same call repeated once with the override, allowed', async () => {
    const c = await newClient()
    const waiting = c.authorize(
      { tool: 'payments.transfer', params: { amount: 2500, currency: 'EUR' } },
      { waitForApproval: true, timeoutMs: 60_000, resource: 'account:ops' },
    )
    const id = await pendingApproval(2500)
    await decide(id, 'approve')
    const d = await waiting
    assert.equal(d.decision, 'allow')
    assert.equal(d.enforced, true)
  })

  test('waitForApproval: denied → the approval_needed answer with outcome denied', async () => {
    const c = await newClient()
    const waiting = c.authorize({ tool: 'payments.transfer', params: { amount: 3500, currency: 'EUR' } }, { waitForApproval: true, timeoutMs: 60_000 })
    const id = await pendingApproval(3500)
    await decide(id, 'deny')
    const d = await waiting
    assert.equal(d.decision, 'approval_needed')
    assert.equal(d.approval?.id, id)
    assert.equal(d.approval?.outcome, 'denied')
  })

  test('without waitForApproval the approval reference comes back at once', async () => {
    const c = await newClient()
    const d = await c.authorize({ tool: 'payments.transfer', params: { amount: 4500, currency: 'EUR' } })
    assert.equal(d.decision, 'approval_needed')
    assert.ok(d.approval?.id)
    assert.ok(
      new URL(d.approval.status_url, aegis.gatewayUrl).origin === new URL(aegis.issuer).origin ||
        new URL(d.approval.status_url, aegis.gatewayUrl).origin === new URL(aegis.gatewayUrl!).origin,
    )
  })
})

test('control plane down: the gateway keeps deciding on the still-valid token; after it returns, a fresh token is issued', async () => {
  const c = await newClient()
  const first = await c.getToken()
  await aegis.stopControlPlane()
  try {
    const d = await c.authorize({ tool: 'crm.read' })
    assert.equal(d.decision, 'allow')
    assert.equal(await c.getToken(), first)
  } finally {
    await aegis.restartControlPlane()
  }
  c.tokenSource.invalidate(first)
  const fresh = await c.getToken()
  assert.notEqual(fresh, first)
  assert.equal((await c.authorize({ tool: 'crm.read' })).decision, 'allow')
})
