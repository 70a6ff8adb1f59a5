import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { decodeJwt, decodeProtectedHeader } from 'jose'
import { canonicalHash } from '../../../src/lib/canonical-json.js'
import { MemoryReplayCache } from '../../../src/store/memory/replay-cache.js'
import { JwksClient } from '../../../src/verify/jwks-client.js'
import { checkOverride, OverrideError, verifyOverride } from '../../../src/gateway/approvals/verify-override.js'
import { skipWithoutPostgres } from '../../helpers/services.js'
import { httpApprovalOpener } from '../../../src/gateway/approvals/hook.js'
import { call, startHarness, transfer, type Harness } from './harness.js'

describe('approval requests, decisions and override tokens', () => {
  let h: Harness
  let jwks: JwksClient
  let finance: { token: string; id: string }

  before(async () => {
    h = await startHarness({ overrides: { approvals: { maxOpenPerAgent: 50, maxOpenPerTenant: 100 } } })
    jwks = new JwksClient({ jwksUrl: `${h.url}/.well-known/jwks.json` })
    await jwks.ready
    finance = await h.adminToken({ role: 'approver', tenant: 'acme', groups: ['finance'] })
  })
  after(async () => {
    jwks.close()
    await h.close()
  })

  const expectFor = (amount: number, over: { agentId?: string; policyVersion?: string } = {}) => ({
    agentId: over.agentId ?? 'billing-bot',
    tenant: 'acme',
    tool: 'payments.transfer',
    paramsHash: canonicalHash(transfer(amount).params),
    policyVersion: over.policyVersion ?? 'v1',
    resource: 'account:ops',
  })

  test('the same agent asking again for the same action gets the same open request', async () => {
    const a = await h.service.openApproval(transfer(101))
    const b = await h.service.openApproval(transfer(101))
    const c = await h.service.openApproval(transfer(102))
    assert.equal(b.approval.id, a.approval.id)
    assert.equal(b.reused, true)
    assert.notEqual(c.approval.id, a.approval.id)
    assert.equal(a.statusUrl, `http://aegis.test/v1/approvals/${a.approval.id}`)
    assert.equal(a.approval.paramsHash, canonicalHash(transfer(101).params))
    const requested = await h.events('approval.requested')
    assert.equal(requested.filter((e) => e.subject === a.approval.id).length, 1)
  })

  test('the same action opened over the admin API by the gateway is deduplicated too', async () => {
    const gw = await h.adminToken({ role: 'gateway' })
    const body = {
      tenant: 'acme',
      agent_id: 'billing-bot',
      client_id: 'ag_billing',
      tool: 'payments.transfer',
      params: transfer(103).params,
      resource: 'account:ops',
      policy_id: 'p',
      policy_version: 'v1',
      group: 'finance',
    }
    const first = await call(`${h.url}/admin/v1/approvals`, { token: gw.token, body })
    const second = await call(`${h.url}/admin/v1/approvals`, { token: gw.token, body })
    assert.equal(first.status, 201)
    assert.equal(second.status, 200)
    assert.equal(second.body.id, first.body.id)
    assert.equal(second.body.reused, true)
    assert.equal(first.body.status_url, `http://aegis.test/v1/approvals/${first.body.id}`)
    const approver = await call(`${h.url}/admin/v1/approvals`, { token: finance.token, body })
    assert.equal(approver.status, 403)
  })

  test('an approver of the group approves; the agent fetches a one-time override bound to the action', async () => {
    const { approval } = await h.service.openApproval(transfer(500))
    const res = await call(`${h.url}/admin/v1/approvals/${approval.id}/approve`, { token: finance.token, body: { reason: 'invoice 42 checked' } })
    assert.equal(res.status, 200, JSON.stringify(res.body))
    assert.equal(res.body.status, 'approved')
    assert.equal(res.body.decided_by, `admin:${finance.id}`)
    const ev = (await h.events('approval.approved')).find((e) => e.subject === approval.id)
    assert.ok(ev)
    assert.equal(ev.actor, `admin:${finance.id}`)
    assert.equal(ev.data.via, 'api')
    assert.equal(ev.data.reason, 'invoice 42 checked')

    const agent = h.accessToken({ tenant: 'acme', agentId: 'billing-bot' })
    const st = await call(`${h.url}/v1/approvals/${approval.id}`, { token: agent })
    assert.equal(st.status, 200)
    assert.equal(st.body.status, 'approved')
    const token = st.body.override_token as string
    assert.equal(typeof token, 'string')
    assert.equal(decodeProtectedHeader(token).typ, 'aegis-override+jwt')
    const claims = decodeJwt(token)
    assert.equal(claims.agent_id, 'billing-bot')
    assert.equal(claims.tool, 'payments.transfer')
    assert.equal(claims.params_hash, canonicalHash(transfer(500).params))
    assert.equal(claims.policy_version, 'v1')
    assert.equal(claims.approval_id, approval.id)
    assert.equal(claims.aud, h.config.audience)
    assert.equal((claims.exp as number) - (claims.iat as number), h.config.tokens.overrideTtlSeconds)

    // Fetched twice: the same token (same jti), so a second copy grants nothing more.
    const again = await call(`${h.url}/v1/approvals/${approval.id}`, { token: h.accessToken({ tenant: 'acme', agentId: 'billing-bot' }) })
    assert.equal(decodeJwt(again.body.override_token as string).jti, claims.jti)

    const replay = new MemoryReplayCache({ clock: h.clock })
    const opts = { keys: jwks, issuer: h.config.issuer, audience: h.config.audience, now: h.clock.now(), replay }
    const ok = await checkOverride(token, { ...opts, expected: expectFor(500) })
    assert.equal(ok.approvalId, approval.id)
    await assert.rejects(checkOverride(token, { ...opts, expected: expectFor(500) }), (e: unknown) => e instanceof OverrideError && e.reason === 'replayed')
    await assert.rejects(verifyOverride(token, { ...opts, expected: expectFor(501) }), (e: unknown) => e instanceof OverrideError && e.reason === 'binding')
    await assert.rejects(
      verifyOverride(token, { ...opts, expected: expectFor(500, { agentId: 'other-bot' }) }),
      (e: unknown) => e instanceof OverrideError && e.reason === 'binding',
    )
    await assert.rejects(
      verifyOverride(token, { ...opts, expected: expectFor(500, { policyVersion: 'v2' }) }),
      (e: unknown) => e instanceof OverrideError && e.reason === 'binding',
    )
    await assert.rejects(
      verifyOverride(token, { ...opts, expected: { ...expectFor(500), resource: 'account:other' } }),
      (e: unknown) => e instanceof OverrideError && e.reason === 'binding',
    )
    const late = h.clock.now() + (h.config.tokens.overrideTtlSeconds + h.config.tokens.clockSkewSeconds + 1) * 1000
    await assert.rejects(
      verifyOverride(token, { ...opts, now: late, expected: expectFor(500) }),
      (e: unknown) => e instanceof OverrideError && e.reason === 'expired',
    )
    // An access token is never an override, nor an override an access token.
    await assert.rejects(verifyOverride(agent, { ...opts, expected: expectFor(500) }), (e: unknown) => e instanceof OverrideError && e.reason === 'type')
    const forged = token.slice(0, token.lastIndexOf('.') + 1) + 'A'.repeat(86)
    await assert.rejects(verifyOverride(forged, { ...opts, expected: expectFor(500) }), (e: unknown) => e instanceof OverrideError && e.reason === 'signature')
  })

  test('a double click is refused with 409 and changes nothing', async () => {
    const { approval } = await h.service.openApproval(transfer(600))
    const first = await call(`${h.url}/admin/v1/approvals/${approval.id}/deny`, { token: finance.token, body: { reason: 'no' } })
    assert.equal(first.status, 200)
    const second = await call(`${h.url}/admin/v1/approvals/${approval.id}/approve`, { token: finance.token, body: { reason: 'oops' } })
    assert.equal(second.status, 409)
    assert.equal(second.body.error, 'conflict')
    assert.match(String(second.body.error_description), /already denied/)
    const stored = await h.store.approvals.get(approval.id)
    assert.equal(stored?.status, 'denied')
    assert.equal(stored?.overrideJti, null)
    const st = await call(`${h.url}/v1/approvals/${approval.id}`, { token: h.accessToken({ tenant: 'acme', agentId: 'billing-bot' }) })
    assert.equal(st.body.status, 'denied')
    assert.equal(st.body.override_token, undefined)
  })

  test("only the request's approver group, or an admin of its tenant, may decide", async () => {
    const { approval } = await h.service.openApproval(transfer(700))
    const ops = await h.adminToken({ role: 'approver', tenant: 'acme', groups: ['ops'] })
    const otherTenant = await h.adminToken({ role: 'approver', tenant: 'globex', groups: ['finance'] })
    const gateway = await h.adminToken({ role: 'gateway' })
    const selfLinked = await h.adminToken({ role: 'approver', tenant: 'acme', groups: ['finance'], linked: ['agent:acme/billing-bot'] })
    for (const [who, status, code] of [
      [ops, 403, 'forbidden'],
      [otherTenant, 403, 'forbidden'],
      [gateway, 403, 'forbidden'],
      [selfLinked, 403, 'forbidden'],
    ] as const) {
      const res = await call(`${h.url}/admin/v1/approvals/${approval.id}/approve`, { token: who.token, body: { reason: 'x' } })
      assert.equal(res.status, status, `${who.id}: ${JSON.stringify(res.body)}`)
      assert.equal(res.body.error, code)
    }
    const noToken = await call(`${h.url}/admin/v1/approvals/${approval.id}/approve`, { body: {} })
    assert.equal(noToken.status, 401)
    // The agent's own access token is no admin credential.
    const asAgent = await call(`${h.url}/admin/v1/approvals/${approval.id}/approve`, {
      token: h.accessToken({ tenant: 'acme', agentId: 'billing-bot' }),
      body: {},
    })
    assert.equal(asAgent.status, 401)
    assert.equal((await h.store.approvals.get(approval.id))?.status, 'pending')
    const refused = (await h.events('approval.decision_refused')).filter((e) => e.subject === approval.id)
    assert.ok(refused.some((e) => /not in group finance/.test(String(e.data.why))))
    assert.ok(refused.some((e) => /own request/.test(String(e.data.why))))
    const admin = await h.adminToken({ role: 'admin', tenant: 'acme' })
    const ok = await call(`${h.url}/admin/v1/approvals/${approval.id}/approve`, { token: admin.token, body: { reason: 'tenant admin' } })
    assert.equal(ok.status, 200)
  })

  test('a request whose policy requires the console refuses API decisions', async () => {
    const { approval } = await h.service.openApproval(transfer(800, { requireConsole: true }))
    const res = await call(`${h.url}/admin/v1/approvals/${approval.id}/approve`, { token: finance.token, body: { reason: 'x' } })
    assert.equal(res.status, 403)
    assert.match(String(res.body.error_description), /console/)
    const viaConsole = await h.service.decide(approval.id, {
      decision: 'approve',
      by: {
        kind: 'admin',
        principal: { id: finance.id, tenant: 'acme', role: 'approver', groups: ['finance'], actor: `console:${finance.id}`, viaConsole: true },
      },
      reason: 'checked in console',
      via: 'console',
    })
    assert.equal(viaConsole.approval.status, 'approved')
    assert.ok(viaConsole.overrideToken)
  })

  test("listing shows pending requests of the approver's groups, with tenant scoping", async () => {
    const mine = await h.service.openApproval(transfer(900))
    const other = await h.service.openApproval(transfer(901, { group: 'ops' }))
    const list = await call(`${h.url}/admin/v1/approvals?status=pending`, { token: finance.token })
    assert.equal(list.status, 200)
    const ids = (list.body.approvals as Array<{ id: string; params: Record<string, unknown> }>).map((a) => a.id)
    assert.ok(ids.includes(mine.approval.id))
    assert.ok(!ids.includes(other.approval.id))
    const shown = (list.body.approvals as Array<{ id: string; params: Record<string, unknown> }>).find((a) => a.id === mine.approval.id)!
    assert.equal(shown.params.amount, 900)
    assert.notEqual(shown.params.card_number, '4111111111111111')
    const foreign = await call(`${h.url}/admin/v1/approvals?tenant=globex`, { token: finance.token })
    assert.equal(foreign.status, 403)
    const one = await call(`${h.url}/admin/v1/approvals/${mine.approval.id}`, { token: finance.token })
    assert.equal(one.status, 200)
    assert.equal(one.body.status, 'pending')
  })

  test('the status endpoint answers only the requesting agent, with a valid token', async () => {
    const { approval } = await h.service.openApproval(transfer(1000))
    const none = await call(`${h.url}/v1/approvals/${approval.id}`)
    assert.equal(none.status, 401)
    assert.match(String(none.headers.get('www-authenticate')), /Bearer/)
    const other = await call(`${h.url}/v1/approvals/${approval.id}`, { token: h.accessToken({ tenant: 'acme', agentId: 'other-bot' }) })
    assert.equal(other.status, 404)
    const garbage = await call(`${h.url}/v1/approvals/${approval.id}`, { token: 'a.b.c' })
    assert.equal(garbage.status, 401)
    assert.equal(garbage.body.error, 'invalid_token')
    const expiredToken = h.accessToken({ tenant: 'acme', agentId: 'billing-bot', ttl: -120 })
    assert.equal((await call(`${h.url}/v1/approvals/${approval.id}`, { token: expiredToken })).status, 401)
    const mine = await call(`${h.url}/v1/approvals/${approval.id}`, { token: h.accessToken({ tenant: 'acme', agentId: 'billing-bot' }) })
    assert.equal(mine.status, 200)
    assert.deepEqual(Object.keys(mine.body).sort(), ['expires_at', 'id', 'status'])
    assert.equal(mine.body.status, 'pending')
  })

  test('a long poll answers as soon as the request is decided', async () => {
    const { approval } = await h.service.openApproval(transfer(1100))
    const agent = h.accessToken({ tenant: 'acme', agentId: 'billing-bot' })
    const polling = call(`${h.url}/v1/approvals/${approval.id}?wait=30`, { token: agent })
    // Decide only once the poll is parked, so the answer must come from the wake-up.
    for (let i = 0; i < 200 && !(h.service as unknown as { waiters: Map<string, Set<unknown>> }).waiters.has(approval.id); i++)
      await new Promise((r) => setTimeout(r, 10))
    await h.service.decide(approval.id, {
      decision: 'approve',
      by: {
        kind: 'admin',
        principal: { id: finance.id, tenant: 'acme', role: 'approver', groups: ['finance'], actor: `admin:${finance.id}`, viaConsole: false },
      },
      reason: 'ok',
      via: 'api',
    })
    const res = await polling
    assert.equal(res.status, 200)
    assert.equal(res.body.status, 'approved')
    assert.equal(typeof res.body.override_token, 'string')
    const bad = await call(`${h.url}/v1/approvals/${approval.id}?wait=abc`, { token: agent })
    assert.equal(bad.status, 400)
  })

  test('requests expire: the sweeper audits it, a late click says so', async () => {
    const { approval } = await h.service.openApproval(transfer(1200))
    h.clock.advance(h.config.approvals.ttlSeconds * 1000 + 1000)
    try {
      const late = await call(`${h.url}/admin/v1/approvals/${approval.id}/approve`, { token: finance.token, body: { reason: 'late' } })
      assert.equal(late.status, 409)
      assert.match(String(late.body.error_description), /expired/)
      const n = await h.service.sweepExpired()
      assert.ok(n >= 1)
      assert.equal((await h.store.approvals.get(approval.id))?.status, 'expired')
      assert.ok((await h.events('approval.expired')).some((e) => e.subject === approval.id))
      const st = await call(`${h.url}/v1/approvals/${approval.id}`, { token: h.accessToken({ tenant: 'acme', agentId: 'billing-bot' }) })
      assert.equal(st.body.status, 'expired')
      // Asking again after expiry opens a new request.
      const again = await h.service.openApproval(transfer(1200))
      assert.notEqual(again.approval.id, approval.id)
    } finally {
      h.clock.advance(0)
    }
  })
})

function throttlingSuite(store: 'sqlite' | 'postgres', skip: string | false) {
  describe(`throttling: caps and budgets (${store})`, { skip }, () => {
    let h: Harness
    before(async () => {
      h = await startHarness({
        store,
        overrides: {
          approvals: {
            maxOpenPerAgent: 2,
            maxOpenPerTenant: 3,
            budgets: [
              {
                name: 'small-transfers',
                tenant: 'acme',
                tool: 'payments.transfer',
                group: 'finance',
                auto_approve_below: { param: '/params/amount', max: 1000 },
                per_day: 2,
              },
            ],
          },
        },
      })
    })
    after(async () => {
      await h.close()
    })

    test('per-agent and per-tenant caps refuse with 429 and say why', async () => {
      await h.service.openApproval(transfer(5000, { agentId: 'a1' }))
      await h.service.openApproval(transfer(5001, { agentId: 'a1' }))
      await assert.rejects(
        h.service.openApproval(transfer(5002, { agentId: 'a1' })),
        (e: Error & { code?: string }) => e.code === 'rate_limited' && /a1 already has 2 open approval requests \(limit 2\)/.test(e.message),
      )
      // The same action again is not a new request, so the cap does not apply.
      assert.equal((await h.service.openApproval(transfer(5001, { agentId: 'a1' }))).reused, true)
      await h.service.openApproval(transfer(5003, { agentId: 'a2' }))
      await assert.rejects(
        h.service.openApproval(transfer(5004, { agentId: 'a3' })),
        (e: Error & { code?: string }) => e.code === 'rate_limited' && /tenant acme already has 3 open/.test(e.message),
      )
      const refused = await h.events('approval.refused')
      assert.equal(refused.length, 2)
      const gw = await h.adminToken({ role: 'gateway' })
      const res = await call(`${h.url}/admin/v1/approvals`, {
        token: gw.token,
        body: { tenant: 'acme', agent_id: 'a3', tool: 'payments.transfer', params: { amount: 5005 }, policy_version: 'v1', group: 'finance' },
      })
      assert.equal(res.status, 429)
      assert.equal(res.body.error, 'rate_limited')
      assert.match(String(res.body.error_description), /limit 3/)
      // The gateway's opener passes the refusal on to the agent with its reason.
      const opener = httpApprovalOpener({
        url: (p: string) => h.url + p,
        headers: (x: Record<string, string> = {}) => ({ authorization: `Bearer ${gw.token}`, ...x }),
      })
      await assert.rejects(
        opener.open({
          tenant: 'acme',
          agent_id: 'a3',
          client_id: 'c',
          tool: 'payments.transfer',
          params: { amount: 5006 },
          resource: null,
          policy_id: 'p',
          policy_version: 'v1',
          group: 'finance',
          require_console: false,
          mask: [],
        }),
        (e: Error & { code?: string; status?: number }) =>
          e.code === 'rate_limited' && e.status === 429 && /tenant acme already has 3 open approval requests/.test(e.message),
      )
    })

    test('a budget approves small amounts automatically up to its daily count, then asks a human', async () => {
      // Automatic approvals open nothing, so the full caps from the previous test do not stop them.
      const one = await h.service.openApproval(transfer(10, { tenant: 'acme', agentId: 'b1' }))
      assert.equal(one.approval.status, 'approved')
      assert.match(String(one.note), /auto-approved under budget "small-transfers" \(1 of 2/)
      const two = await h.service.openApproval(transfer(20, { tenant: 'acme', agentId: 'b1' }))
      assert.equal(two.approval.status, 'approved')
      assert.ok(two.approval.overrideJti)
      const agent = h.accessToken({ tenant: 'acme', agentId: 'b1' })
      const st = await call(`${h.url}/v1/approvals/${two.approval.id}`, { token: agent })
      assert.equal(st.body.status, 'approved')
      assert.equal(typeof st.body.override_token, 'string')
      const auto = await h.events('approval.auto_approved')
      assert.equal(auto.length, 2)
      assert.equal(auto[0]!.actor, 'budget:small-transfers')
      // Past the budget a human is asked, and that is capped again: free the caps first.
      await h.store.approvals.expire(h.clock.now() + 10 * 24 * 3600 * 1000)
      const three = await h.service.openApproval(transfer(30, { tenant: 'acme', agentId: 'b1' }))
      assert.equal(three.approval.status, 'pending')
      assert.match(String(three.note), /used up \(2 of 2 in the last 24 hours\)/)
      const big = await h.service.openApproval(transfer(2000, { tenant: 'acme', agentId: 'b2' }))
      assert.equal(big.approval.status, 'pending')
      assert.match(String(big.note), /\/params\/amount = 2000 is not below 1000/)
      await h.store.approvals.expire(h.clock.now() + 10 * 24 * 3600 * 1000)
      // A day later the budget is available again.
      h.clock.advance(24 * 3600 * 1000 + 1000)
      const later = await h.service.openApproval(transfer(40, { tenant: 'acme', agentId: 'b1' }))
      assert.equal(later.approval.status, 'approved')
    })
  })
}

throttlingSuite('sqlite', false)
throttlingSuite('postgres', await skipWithoutPostgres())
