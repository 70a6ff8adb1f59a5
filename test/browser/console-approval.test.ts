/**
 * One approval request on a console page of its own (`/console/approvals/{id}`,
 * the URL an MCP client shows its user and notifications link to), in
 * Chromium (playwright-core driving Debian's Chromium) against a real
 * control plane and gateway: the page asks an approver to log in, then shows
 * agent, tool, resource, the policy's reason, expiry and the parameters
 * masked as the notifiers mask them; Approve decides in one click (the
 * agent's status URL then serves the override), Deny likewise; an approver
 * outside the request's group is told why and nothing changes.
 * Screenshots go to test-output/browser/.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import type { BrowserContext, Page } from 'playwright-core'
import { launchChromium, OUT, skipWithoutChromium } from './chromium.js'
import { activatePolicy, authorize, eventually, startGatewayEnv, type GatewayEnv, type RunningGateway } from '../helpers/gateway-env.js'

const MASK = '••••••'

const CEDAR = `
@id("transfer-permit")
@sanitize("redact:/params/memo")
permit (principal, action == Action::"payments.transfer", resource);

@id("transfer-approval")
@approval("finance")
@reason("transfers above 1000 need a finance approver")
forbid (principal, action == Action::"payments.transfer", resource)
when { context.params has amount && context.params.amount > 1000 }
unless { context.override };
`
const IBAN = 'DE89 3704 0044 0532 0130 00'
const MEMO = 'Q4 bonus, J. Doe'

const skip = skipWithoutChromium()

describe('console: one approval request on its own page, in Chromium', { skip }, () => {
  let env: GatewayEnv
  let gw: RunningGateway
  let ctx: BrowserContext
  let closeBrowser: (() => Promise<void>) | undefined
  let page: Page
  let token: string
  let approverToken: string
  let outsiderToken: string

  const shot = (p: Page, name: string) => p.screenshot({ path: join(OUT, `${name}.png`), fullPage: true })

  /** A fresh approval request through the gateway, as an agent's call opens it. */
  async function ask(amount: number): Promise<{ id: string; status_url: string }> {
    const r = await authorize(gw.url, token, {
      action: { tool: 'payments.transfer', params: { amount, currency: 'EUR', to_iban: IBAN, memo: MEMO } },
      resource: 'account:ops',
    })
    assert.equal(r.body.decision, 'approval_needed')
    return r.body.approval as { id: string; status_url: string }
  }

  before(async () => {
    mkdirSync(OUT, { recursive: true })
    env = await startGatewayEnv()
    await activatePolicy(env, CEDAR)
    gw = await env.startGateway()
    token = await env.token(await env.agent('pay-bot', ['payments.transfer']))
    await eventually(
      async () => (await authorize(gw.url, token, { action: { tool: 'payments.transfer', params: { amount: 5 } } })).body.decision === 'sanitize',
      10_000,
      20,
    )
    approverToken = (await env.admin('POST', '/admin-tokens', { tenant: env.tenant, role: 'approver', name: 'alice', groups: ['finance'] })).token as string
    outsiderToken = (await env.admin('POST', '/admin-tokens', { tenant: env.tenant, role: 'approver', name: 'bob', groups: ['legal'] })).token as string
    const c = await launchChromium({ width: 1100, height: 900 })
    ctx = c.context
    closeBrowser = c.close
    page = await ctx.newPage()
  })

  after(async () => {
    await closeBrowser?.()
    await env?.close()
  })

  test('an approver who is not in the group sees the request but cannot decide it', async () => {
    const a = await ask(1500)
    const p = await ctx.newPage()
    await p.goto(`${env.issuer}/console/approvals/${a.id}`)
    await p.locator('#token').fill(outsiderToken)
    await p.keyboard.press('Enter')
    await p.locator('#flash').filter({ hasText: 'approver is not in group finance' }).waitFor()
    assert.equal(await p.locator('#request').isVisible(), false)
    assert.equal(((await env.admin('GET', `/approvals/${a.id}`)) as { status: string }).status, 'pending')
    // Log out, so the page below starts at the login form.
    await p.evaluate(async () => {
      const s = (await (await fetch('/console/session')).json()) as { csrf: string }
      await fetch('/console/logout', { method: 'POST', headers: { 'x-aegis-csrf': s.csrf } })
    })
    await p.close()
  })

  test('after login: agent, tool, resource, reason, expiry and masked parameters; Approve decides in one click', async () => {
    const a = await ask(5000)
    await page.goto(`${env.issuer}/console/approvals/${a.id}`)
    await page.locator('#login').waitFor({ state: 'visible' })
    assert.equal(await page.locator('#request').isVisible(), false, 'nothing is shown before login')
    await page.locator('#token').fill(approverToken)
    await page.keyboard.press('Enter')
    await page.locator('#decide').waitFor({ state: 'visible' })

    assert.equal(await page.locator('#a-tool').textContent(), 'payments.transfer')
    assert.equal(await page.locator('#a-id').textContent(), a.id)
    assert.equal(await page.locator('#a-agent').textContent(), `pay-bot (tenant ${env.tenant})`)
    assert.equal(await page.locator('#a-resource').textContent(), 'account:ops')
    assert.equal(await page.locator('#a-reason').textContent(), 'transfers above 1000 need a finance approver')
    assert.equal(await page.locator('#a-policy').textContent(), 'transfer-approval')
    assert.match((await page.locator('#a-expires').textContent()) ?? '', /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ \(in \d+ min\)$/)
    assert.equal(await page.locator('#a-status').textContent(), 'pending')
    const params = JSON.parse((await page.locator('#a-params').textContent()) ?? '{}') as Record<string, unknown>
    assert.deepEqual(params, { amount: 5000, currency: 'EUR', to_iban: MASK, memo: MASK })
    const html = await page.content()
    assert.ok(!html.includes(IBAN) && !html.includes(MEMO), 'the masked values are nowhere on the page')
    await shot(page, 'console-approval-pending')

    await page.locator('#approve').click()
    await page.locator('#done').filter({ hasText: 'Approved' }).waitFor()
    assert.equal(await page.locator('#a-status').textContent(), 'approved')
    assert.equal(await page.locator('#decide').isVisible(), false)
    assert.match((await page.locator('#a-decided').textContent()) ?? '', /^approved by console:/)
    await shot(page, 'console-approval-approved')

    const stored = (await env.admin('GET', `/approvals/${a.id}`)) as { status: string; decided_by: string }
    assert.equal(stored.status, 'approved')
    const status = (await (await fetch(a.status_url, { headers: { authorization: `Bearer ${token}` } })).json()) as { status: string; override_token?: string }
    assert.equal(status.status, 'approved')
    assert.equal(typeof status.override_token, 'string')
  })

  test('the queue links to the page; Deny decides in one click too, and the page of a decided request offers no buttons', async () => {
    const a = await ask(2500)
    // From the console's queue: the tool links to the request's page.
    await page.goto(`${env.issuer}/console/#approvals`)
    await page.locator(`#approvals-body tr[data-approval="${a.id}"] a`).click()
    await page.waitForURL(`${env.issuer}/console/approvals/${a.id}`)
    await page.locator('#decide').waitFor({ state: 'visible' })
    await page.locator('#reason').fill('not this quarter')
    await page.locator('#deny').click()
    await page.locator('#done').filter({ hasText: 'Denied' }).waitFor()
    assert.equal(((await env.admin('GET', `/approvals/${a.id}`)) as { status: string; reason: string }).reason, 'not this quarter')
    await page.reload()
    await page.locator('#a-status').filter({ hasText: 'denied' }).waitFor()
    assert.equal(await page.locator('#decide').isVisible(), false)
    assert.match((await page.locator('#a-decided').textContent()) ?? '', /: not this quarter$/)
  })
})
