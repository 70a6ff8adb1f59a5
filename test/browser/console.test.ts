/**
 * The admin console in a real browser (playwright-core driving Debian's
 * Chromium) against a real control plane and gateway: keyboard login, live
 * KPIs, approving a pending request and the agent's retried call allowed,
 * revoking an agent and its next call refused, lifting that revocation, tenant isolation of a tenant
 * admin's session, CSRF. Screenshots go to test-output/browser/.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import type { BrowserContext, Page } from 'playwright-core'
import { APPROVAL_CEDAR, consoleLogin, launchChromium, OUT, skipWithoutChromium } from './chromium.js'
import { activatePolicy, authorize, eventually, startGatewayEnv, type Credential, type GatewayEnv, type RunningGateway } from '../helpers/gateway-env.js'

// The page's DOM, typed minimally for the callbacks run in the browser (the project compiles without lib.dom).
declare const document: { cookie: string; getElementById(id: string): { textContent: string | null } | null }

const CEDAR = APPROVAL_CEDAR

async function statusOf(url: string, token: string): Promise<Record<string, unknown>> {
  const res = await fetch(url, { headers: { authorization: `Bearer ${token}` } })
  return (await res.json()) as Record<string, unknown>
}

const skip = skipWithoutChromium()

describe('admin console in Chromium', { skip }, () => {
  let env: GatewayEnv
  let gw: RunningGateway
  let ctx: BrowserContext
  let closeBrowser: (() => Promise<void>) | undefined
  let page: Page
  let cred: Credential

  const shot = (p: Page, name: string) => p.screenshot({ path: join(OUT, `${name}.png`), fullPage: true })
  const login = (p: Page, token: string): Promise<void> => consoleLogin(p, env.issuer, token)

  before(async () => {
    mkdirSync(OUT, { recursive: true })
    env = await startGatewayEnv()
    await activatePolicy(env, CEDAR)
    gw = await env.startGateway()
    cred = await env.agent('pay-bot', ['crm.read', 'payments.transfer'])
    const warm = await env.token(cred)
    // The bundle reaches the gateway over the feed: wait until it decides with it.
    await eventually(async () => (await authorize(gw.url, warm, { action: { tool: 'crm.read', params: {} } })).body.decision === 'allow', 10_000, 50)
    const c = await launchChromium()
    ctx = c.context
    closeBrowser = c.close
    page = await ctx.newPage()
  })

  after(async () => {
    await closeBrowser?.()
    await env?.close()
  })

  test('log in with the keyboard and see the KPIs move after minting tokens and making calls', async () => {
    await login(page, env.adminToken)
    const cookies = await ctx.cookies()
    const session = cookies.find((c) => c.name === 'aegis_session')
    assert.ok(session, 'no session cookie')
    assert.equal(session.httpOnly, true)
    assert.equal(session.sameSite, 'Strict')
    assert.equal(await page.evaluate(() => document.cookie.includes('aegis_session')), false, 'the session cookie is not readable from script')

    await page.locator('#kpi-issued').filter({ hasText: /^\d+$/ }).waitFor()
    const before = Number(await page.locator('#kpi-issued').textContent())
    const token = await env.token(cred)
    await env.token(cred)
    await env.token(cred)
    for (let i = 0; i < 3; i++) assert.equal((await authorize(gw.url, token, { action: { tool: 'crm.read', params: {} } })).body.decision, 'allow')
    await page.waitForFunction((n) => Number(document.getElementById('kpi-issued')!.textContent) >= n, before + 3, { timeout: 20_000 })
    await page.locator('#kpi-decisions tr[data-kind="allow"]').waitFor({ timeout: 20_000 })
    assert.ok(Number(await page.locator('#kpi-decisions tr[data-kind="allow"] td.num').textContent()) >= 3)
    assert.ok((await page.locator('#chart-issued polyline').count()) >= 1, 'the issuance chart is drawn')
    await shot(page, '01-kpis')
  })

  test("approve a pending request in the console and the agent's retried call is allowed", async () => {
    const token = await env.token(cred)
    const first = await authorize(gw.url, token, { action: { tool: 'payments.transfer', params: { amount: 5000, currency: 'EUR' } }, resource: 'account:ops' })
    assert.equal(first.body.decision, 'approval_needed', JSON.stringify(first.body))
    const approval = first.body.approval as { id: string; status_url: string }

    await page.goto(`${env.issuer}/console/#approvals`)
    const row = page.locator(`tr[data-approval="${approval.id}"]`)
    await row.waitFor({ timeout: 10_000 })
    await shot(page, '02-approvals-pending')
    await row.locator('input').fill('invoice 4711')
    await row.getByRole('button', { name: 'Approve' }).click()
    await page.locator('#flash').filter({ hasText: 'Approved.' }).waitFor()

    const st = await statusOf(approval.status_url, token)
    assert.equal(st.status, 'approved')
    assert.equal(typeof st.override_token, 'string')
    const retried = await authorize(
      gw.url,
      token,
      { action: { tool: 'payments.transfer', params: { amount: 5000, currency: 'EUR' } }, resource: 'account:ops' },
      { 'aegis-override': st.override_token as string },
    )
    assert.equal(retried.status, 200)
    assert.equal(retried.body.decision, 'allow', JSON.stringify(retried.body))
    await page.selectOption('#approval-status', 'approved')
    await page.locator(`tr[data-approval="${approval.id}"]`).filter({ hasText: 'invoice 4711' }).waitFor()
    await shot(page, '03-approvals-approved')
  })

  test('register an agent, issue a bootstrap credential shown once, revoke an agent and its next call is refused, lift the revocation', async () => {
    await page.goto(`${env.issuer}/console/#agents`)
    const form = page.locator('#agent-form')
    await form.getByLabel('Agent id').fill('console-bot')
    await form.getByLabel('Capabilities').fill('crm.read')
    await form.getByRole('button', { name: 'Register' }).click()
    const row = page.locator('tr[data-agent="console-bot"]')
    await row.waitFor()
    await row.getByRole('button', { name: 'Issue bootstrap credential' }).click()
    const secret = await page.locator('#cred-secret').textContent()
    const clientId = await page.locator('#cred-client-id').textContent()
    assert.ok(secret && clientId)
    const botToken = await env.token({ client_id: clientId, client_secret: secret })
    assert.equal((await authorize(gw.url, botToken, { action: { tool: 'crm.read', params: {} } })).body.decision, 'allow')
    await shot(page, '04-agents-credential')
    await page.getByRole('button', { name: 'Done, hide it' }).click()
    assert.equal(await page.locator('#cred-secret').count(), 0, 'the secret is gone once hidden')

    const payToken = await env.token(cred)
    assert.equal((await authorize(gw.url, payToken, { action: { tool: 'crm.read', params: {} } })).status, 200)
    await page.locator('tr[data-agent="pay-bot"]').getByRole('button', { name: 'Revoke' }).click()
    await page.locator('#flash').filter({ hasText: 'pay-bot revoked' }).waitFor()
    await eventually(async () => (await authorize(gw.url, payToken, { action: { tool: 'crm.read', params: {} } })).status === 401, 10_000, 50)
    const refused = await authorize(gw.url, payToken, { action: { tool: 'crm.read', params: {} } })
    assert.equal(refused.status, 401)
    // The other agent is unaffected.
    assert.equal((await authorize(gw.url, botToken, { action: { tool: 'crm.read', params: {} } })).status, 200)
    await page.goto(`${env.issuer}/console/#revocations`)
    await page.locator('#revocations-body').filter({ hasText: 'pay-bot' }).waitFor()
    await shot(page, '05-revocations')

    // The revocation holds for the token endpoint too, until lifted from the console.
    await assert.rejects(env.token(cred), /answered 401/)
    const { revocations } = (await env.admin('GET', '/revocations')) as { revocations: Array<{ value: string; created_at: number }> }
    const createdAt = revocations.find((r) => r.value === 'pay-bot')!.created_at
    // Tokens carry whole seconds: the next one must be minted in a later second than the revocation.
    await new Promise((r) => setTimeout(r, Math.max(0, (createdAt + 1) * 1000 - Date.now())))
    page.once('dialog', (dialog) => {
      void dialog.accept()
    })
    await page.locator('#revocations-body tr', { hasText: 'pay-bot' }).getByRole('button', { name: 'Lift' }).click()
    await page.locator('#flash').filter({ hasText: 'lifted' }).waitFor()
    const lifted = await env.token(cred)
    await eventually(async () => (await authorize(gw.url, lifted, { action: { tool: 'crm.read', params: {} } })).status === 200, 10_000, 50)
    assert.equal(
      (await authorize(gw.url, payToken, { action: { tool: 'crm.read', params: {} } })).status,
      401,
      'the token from before the revocation stays refused',
    )
    // Only the issued_before entry the lift left behind remains for pay-bot; it ends by itself, so it has no Lift button.
    await page.locator('#revocations-body tr', { hasText: 'issued_before' }).waitFor()
    assert.equal(await page.locator('#revocations-body tr', { hasText: 'pay-bot' }).getByRole('button', { name: 'Lift' }).count(), 0)
  })

  test('keys, policies and the audit log with a verify-chain button', async () => {
    await page.goto(`${env.issuer}/console/#keys`)
    await page.locator('#keys-body tr').first().waitFor()
    assert.match((await page.locator('#keys-schedule').textContent()) ?? '', /rotate every/)
    // Dates of this century, whatever unit the answer carries (epoch seconds for *_at, ms for ts_ms): read in the wrong one they are 1970 or year 50,000.
    const shownAt = async (cell: string) => (await page.locator(cell).first().textContent()) ?? ''
    assert.match(await shownAt('#keys-body tr td:nth-child(4)'), /^20\d\d-\d\d-\d\d /)
    assert.match((await page.locator('#keys-schedule').textContent()) ?? '', /rotation: 20\d\d-\d\d-\d\d /)
    await page.goto(`${env.issuer}/console/#policies`)
    await page.locator('#policies-body tr').first().waitFor()
    await page.goto(`${env.issuer}/console/#audit`)
    await page.locator('#audit-form').getByLabel('Type').fill('token.issued')
    await page.locator('#audit-form').getByRole('button', { name: 'Filter' }).click()
    // The unfiltered page load may still be landing: wait for the filtered rows.
    await page.waitForFunction(
      () => {
        const cells = (document as unknown as { querySelectorAll(s: string): ArrayLike<{ textContent: string | null }> }).querySelectorAll(
          '#audit-body tr td:nth-child(3)',
        )
        return cells.length > 0 && Array.from(cells).every((c) => c.textContent === 'token.issued')
      },
      undefined,
      { timeout: 10_000 },
    )
    const types = await page.locator('#audit-body tr td:nth-child(3)').allTextContents()
    assert.ok(types.length > 0 && types.every((t) => t === 'token.issued'))
    assert.match(await shownAt('#audit-body tr td:nth-child(2)'), /^20\d\d-\d\d-\d\d /)
    await page.getByRole('button', { name: 'Verify chain' }).click()
    await page.locator('#audit-verify-result').filter({ hasText: 'Chain verified' }).waitFor()
    await shot(page, '06-audit')
  })

  test('cookie-authenticated POSTs from the page need the CSRF header', async () => {
    const r = await page.evaluate(async () => {
      const body = JSON.stringify({ id: 'csrf-browser', name: 'x' })
      const without = await fetch('/admin/v1/tenants', { method: 'POST', headers: { 'content-type': 'application/json' }, body })
      const s = (await (await fetch('/console/session')).json()) as { csrf: string }
      const withToken = await fetch('/admin/v1/tenants', { method: 'POST', headers: { 'content-type': 'application/json', 'x-aegis-csrf': s.csrf }, body })
      return [without.status, withToken.status]
    })
    assert.deepEqual(r, [403, 201])
  })

  test("a tenant admin's session cannot fetch another tenant's data through the console's API calls", async () => {
    await env.admin('POST', '/tenants', { id: 'rival-co', name: 'Rival' })
    await env.admin('POST', '/tenants/rival-co/agents', { agent_id: 'rival-secret-bot', scopes: [], capabilities: ['crm.read'], max_ttl_seconds: 300 })
    const tok = (await env.admin('POST', '/admin-tokens', { tenant: env.tenant, role: 'admin', name: 'browser-tenant-admin' })) as { token: string }
    const c = await launchChromium()
    try {
      const p = await c.context.newPage()
      await login(p, tok.token)
      assert.equal(await p.locator('#tenant').isDisabled(), true)
      // The tenant list arrives after the navigation shows: wait for its one option.
      await p.locator('#tenant option').first().waitFor({ state: 'attached' })
      assert.deepEqual(await p.locator('#tenant option').evaluateAll((os) => os.map((o) => (o as unknown as { value: string }).value)), [env.tenant])
      await p.goto(`${env.issuer}/console/#agents`)
      await p.locator('tr[data-agent="pay-bot"]').waitFor()
      assert.equal(await p.locator('tr[data-agent="rival-secret-bot"]').count(), 0)
      const results = await p.evaluate(async (own) => {
        const paths = [
          `/admin/v1/tenants/${own}/agents`,
          '/admin/v1/tenants/rival-co/agents',
          '/admin/v1/tenants/rival-co/policies',
          '/admin/v1/audit?tenant=rival-co',
          '/admin/v1/approvals?tenant=rival-co',
          '/admin/v1/keys',
        ]
        const out: Array<[string, number, string]> = []
        for (const path of paths) {
          const res = await fetch(path)
          out.push([path, res.status, await res.text()])
        }
        return out
      }, env.tenant)
      assert.equal(results[0]![1], 200)
      for (const [path, status, text] of results.slice(1)) {
        assert.equal(status, 403, path)
        assert.ok(!text.includes('rival-secret-bot'), path)
      }
      await p.goto(`${env.issuer}/console/#audit`)
      await p.getByRole('button', { name: 'Verify chain' }).click()
      await p.locator('#audit-verify-result').filter({ hasText: 'global admin' }).waitFor()
      await shot(p, '07-tenant-admin')
    } finally {
      await c.close()
    }
  })
})
