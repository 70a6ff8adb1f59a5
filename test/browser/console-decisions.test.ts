/**
 * The console's decision log, agent page and approval context in Chromium
 * (playwright-core driving Debian's Chromium) against a real control plane
 * and real gateways whose decisions reach the decision log over its upload
 * channel: the Decisions page newest first, its filters, cursor paging and
 * live tail; one agent's page (decisions, tokens, approvals, revocations)
 * and its revoke button, after which the gateway refuses the agent's token;
 * approval rows naming the policy, its reason, the approver group, the
 * resource and the expiry; the audit log newest first; the TPS tile's
 * window. Screenshots go to test-output/browser/.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import type { BrowserContext, Page } from 'playwright-core'
import { APPROVAL_CEDAR, consoleLogin, launchChromium, OUT, skipWithoutChromium } from './chromium.js'
import { activatePolicy, authorize, eventually, startGatewayEnv, type Credential, type GatewayEnv, type RunningGateway } from '../helpers/gateway-env.js'

// The page's DOM, typed minimally for the callbacks run in the browser (the project compiles without lib.dom).
declare const document: { querySelectorAll(s: string): ArrayLike<{ textContent: string | null; getAttribute(n: string): string | null }> }

const CEDAR = APPROVAL_CEDAR

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))
const skip = skipWithoutChromium()

describe('console: decisions, agent page, approval context in Chromium', { skip }, () => {
  let env: GatewayEnv
  let gw: RunningGateway
  let shadow: RunningGateway
  let ctx: BrowserContext
  let closeBrowser: (() => Promise<void>) | undefined
  let page: Page
  let pay: Credential
  let other: Credential
  let payToken: string

  const shot = (p: Page, name: string) => p.screenshot({ path: join(OUT, `${name}.png`), fullPage: true })
  const texts = (selector: string) => page.locator(selector).allTextContents()
  /** Decision-log records stored for this env's tenant (the API the page reads). */
  const stored = async (q = ''): Promise<Array<Record<string, unknown>>> =>
    ((await env.admin('GET', `/decisions?tenant=${env.tenant}&limit=1000${q}`)) as { decisions: Array<Record<string, unknown>> }).decisions

  before(async () => {
    mkdirSync(OUT, { recursive: true })
    env = await startGatewayEnv()
    await activatePolicy(env, CEDAR)
    // Short upload interval: the log is on the page within a fraction of a second.
    gw = await env.startGateway({ decisionLog: { flushIntervalMs: 50 } })
    shadow = await env.startGateway({ gateway: { shadow: true }, decisionLog: { flushIntervalMs: 50 } })
    pay = await env.agent('pay-bot', ['crm.read', 'payments.transfer', 'files.delete'])
    other = await env.agent('other-bot', ['crm.read', 'files.delete'])
    payToken = await env.token(pay)
    await eventually(async () => (await authorize(gw.url, payToken, { action: { tool: 'crm.read', params: {} } })).body.decision === 'allow', 10_000, 50)
    await eventually(async () => (await authorize(shadow.url, payToken, { action: { tool: 'crm.read', params: {} } })).body.decision === 'allow', 10_000, 50)
    const otherToken = await env.token(other)
    // In a known order, a few ms apart, so "newest first" is checkable: the last call is the first row.
    assert.equal((await authorize(shadow.url, otherToken, { action: { tool: 'files.delete', params: { path: '/tmp/x' } } })).body.decision, 'deny')
    await sleep(5)
    assert.equal((await authorize(gw.url, otherToken, { action: { tool: 'files.delete', params: { path: '/etc/passwd' } } })).body.decision, 'deny')
    await sleep(5)
    const pending = await authorize(gw.url, payToken, {
      action: { tool: 'payments.transfer', params: { amount: 5000, currency: 'EUR' } },
      resource: 'account:ops',
    })
    assert.equal(pending.body.decision, 'approval_needed')
    await sleep(5)
    assert.equal((await authorize(gw.url, payToken, { action: { tool: 'payments.transfer', params: { amount: 20, currency: 'EUR' } } })).body.decision, 'allow')
    await eventually(async () => (await stored()).some((d) => d.tool === 'payments.transfer' && d.decision === 'allow'), 10_000, 50)

    const c = await launchChromium()
    ctx = c.context
    closeBrowser = c.close
    page = await ctx.newPage()
    await consoleLogin(page, env.issuer, env.adminToken)
    // The env's tenant is the one the console picks (the only one).
  })

  after(async () => {
    await closeBrowser?.()
    await env?.close()
  })

  test('the TPS tile says its window; open approvals are a tile', async () => {
    await page
      .locator('#kpi-tps')
      .filter({ hasText: /^\d+\.\d+$/ })
      .waitFor()
    assert.equal(await page.locator('#kpi-tps-window').textContent(), 'last 60 s')
    await page.locator('#kpi-approvals-open').filter({ hasText: '1' }).waitFor({ timeout: 10_000 })
  })

  test('Decisions: newest first, with reasons, policy and shadow marks; filters narrow it', async () => {
    await page.goto(`${env.issuer}/console/#decisions`)
    await page.locator('#decisions-body tr[data-decision-id]').nth(5).waitFor()
    const first = page.locator('#decisions-body tr[data-decision-id]').first()
    assert.equal(await first.getAttribute('data-decision'), 'allow')
    assert.match((await first.textContent()) ?? '', /payments\.transfer/)
    const second = page.locator('#decisions-body tr[data-decision-id]').nth(1)
    assert.equal(await second.getAttribute('data-decision'), 'approval_needed')
    assert.match((await second.textContent()) ?? '', /transfers above 1000 need a finance approver/)
    // Every row is no newer than the one above it.
    const ids = await page
      .locator('#decisions-body tr[data-decision-id]')
      .evaluateAll((rows) => rows.map((r) => (r as unknown as { getAttribute(n: string): string }).getAttribute('data-decision-id')))
    const byId = new Map((await stored()).map((d) => [d.id as string, d.ts_ms as number]))
    const ts = ids.map((id) => byId.get(id)!)
    for (let i = 1; i < ts.length; i++) assert.ok(ts[i - 1]! >= ts[i]!, `row ${i} is newer than the row above it`)
    assert.equal(ids.length, byId.size, 'every stored decision of the tenant is listed')
    await page.locator('#decisions-body tr', { hasText: 'shadow' }).first().waitFor()

    const form = page.locator('#decisions-form')
    await form.getByLabel('Decision').selectOption('deny')
    await form.getByRole('button', { name: 'Filter' }).click()
    await page.waitForFunction(
      () => {
        const rows = Array.from(document.querySelectorAll('#decisions-body tr'))
        return rows.length === 2 && rows.every((r) => r.getAttribute('data-decision') === 'deny')
      },
      undefined,
      { timeout: 10_000 },
    )
    await form.getByLabel('Enforced').selectOption('false')
    await form.getByRole('button', { name: 'Filter' }).click()
    await page.waitForFunction(() => document.querySelectorAll('#decisions-body tr').length === 1, undefined, { timeout: 10_000 })
    assert.match((await page.locator('#decisions-body tr').textContent()) ?? '', /other-bot.*files\.delete.*shadow/s)
    await form.getByLabel('Decision').selectOption('')
    await form.getByLabel('Enforced').selectOption('')
    await form.getByLabel('Agent').fill('other-bot')
    await form.getByRole('button', { name: 'Filter' }).click()
    await page.waitForFunction(
      () => {
        const rows = Array.from(document.querySelectorAll('#decisions-body tr td:nth-child(2)'))
        return rows.length === 2 && rows.every((c) => c.textContent === 'other-bot')
      },
      undefined,
      { timeout: 10_000 },
    )
    // A time range that ends before anything happened lists nothing.
    await form.getByLabel('Agent').fill('')
    await form.getByLabel('To', { exact: true }).fill('2020-01-01T00:00:00')
    await form.getByRole('button', { name: 'Filter' }).click()
    await page.locator('#decisions-body').filter({ hasText: 'No decisions match.' }).waitFor()
    await form.getByLabel('To', { exact: true }).fill('')
    await form.getByRole('button', { name: 'Filter' }).click()
    await page.locator('#decisions-body tr[data-decision-id]').nth(5).waitFor()
  })

  test('Decisions: the live tail adds new decisions at the top; "Older decisions" pages with the cursor', async () => {
    const before = await page.locator('#decisions-body tr[data-decision-id]').count()
    await page.locator('#decisions-tail').check()
    await page.locator('#decisions-status').filter({ hasText: 'live' }).waitFor()
    const shown = new Set((await stored()).map((d) => d.id))
    const t = await env.token(other)
    assert.equal((await authorize(gw.url, t, { action: { tool: 'crm.read', params: {} } })).body.decision, 'allow')
    let added: Record<string, unknown> | undefined
    await eventually(async () => (added = (await stored()).find((d) => !shown.has(d.id))) !== undefined, 10_000, 50)
    const row = page.locator(`#decisions-body tr.fresh[data-decision-id="${added!.id as string}"]`)
    await row.waitFor({ timeout: 10_000 })
    assert.equal(
      await page.locator('#decisions-body tr[data-decision-id]').first().getAttribute('data-decision-id'),
      added!.id,
      'the new decision is the top row',
    )
    assert.match((await row.textContent()) ?? '', /other-bot.*crm\.read.*allow/s)
    assert.equal(await page.locator('#decisions-body tr[data-decision-id]').count(), before + 1)
    await shot(page, '08-decisions')
    await page.locator('#decisions-tail').uncheck()

    // Past one page (100): the rest is one click away, none twice.
    for (let i = 0; i < 110; i++) await authorize(gw.url, t, { action: { tool: 'crm.read', params: { i } } })
    await eventually(async () => (await stored()).length >= before + 111, 10_000, 50)
    await page.locator('#decisions-form').getByRole('button', { name: 'Filter' }).click()
    await page.locator('#decisions-more').waitFor({ state: 'visible' })
    assert.equal(await page.locator('#decisions-body tr[data-decision-id]').count(), 100)
    await page.locator('#decisions-more').click()
    await page.waitForFunction((n) => document.querySelectorAll('#decisions-body tr[data-decision-id]').length === n, before + 111, { timeout: 10_000 })
    const ids = await page
      .locator('#decisions-body tr[data-decision-id]')
      .evaluateAll((rows) => rows.map((r) => (r as unknown as { getAttribute(n: string): string }).getAttribute('data-decision-id')))
    assert.equal(new Set(ids).size, ids.length, 'no decision is listed twice across pages')
    assert.equal(await page.locator('#decisions-more').isHidden(), true)
  })

  test('approval rows show the policy and reason that asked, the approver group, the resource and the expiry', async () => {
    await page.goto(`${env.issuer}/console/#approvals`)
    const row = page.locator('#approvals-body tr[data-approval]').first()
    await row.waitFor()
    const cells = await row.locator('td').allTextContents()
    assert.equal(cells[2], 'payments.transfer')
    assert.equal(cells[4], 'account:ops')
    assert.match(cells[5]!, /^transfer-approval @ 2026-11-29\.\d+transfers above 1000 need a finance approver$/)
    assert.equal(cells[6], 'finance')
    assert.match(cells[7]!, /^\d\d:\d\d:\d\dZ \(in \d+ min\)$/)
    assert.equal(cells[8], 'pending')
    await shot(page, '09-approvals')
  })

  test('an agent page: its decisions, tokens, approvals and revocations; the revoke button revokes it', async () => {
    await page.goto(`${env.issuer}/console/#agents`)
    await page.locator('tr[data-agent="pay-bot"]').getByRole('link', { name: 'pay-bot' }).click()
    await page
      .locator('#agent-name')
      .filter({ hasText: `${env.tenant}/pay-bot` })
      .waitFor()
    assert.equal(await page.locator('#agent-state').textContent(), 'active')
    await page.locator('#agent-decisions tr[data-decision-id]').first().waitFor()
    const tools = await texts('#agent-decisions tr[data-decision-id] td:nth-child(2)')
    assert.ok(tools.includes('payments.transfer') && !tools.includes('files.delete'), `only pay-bot's decisions: ${tools.join(', ')}`)
    // Tokens: the audit's token.issued events of this agent, newest first.
    await page.locator('#agent-tokens tr[data-jti]').first().waitFor()
    const { events } = (await env.admin('GET', `/audit?type=token.issued&tenant=${env.tenant}&order=desc&limit=1000`)) as {
      events: Array<{ actor: string; data: { jti: string } }>
    }
    const mine = events.filter((e) => e.actor === `agent:${env.tenant}/pay-bot`).map((e) => e.data.jti)
    assert.deepEqual(
      await page
        .locator('#agent-tokens tr[data-jti]')
        .evaluateAll((rows) => rows.map((r) => (r as unknown as { getAttribute(n: string): string }).getAttribute('data-jti'))),
      mine,
    )
    await page.locator('#agent-approvals tr[data-approval]', { hasText: 'transfers above 1000 need a finance approver' }).waitFor()
    assert.match((await page.locator('#agent-revocations').textContent()) ?? '', /None/)
    await shot(page, '10-agent')

    assert.equal((await authorize(gw.url, payToken, { action: { tool: 'crm.read', params: {} } })).status, 200)
    await page.locator('#agent-revoke-reason').fill('leaked in a ticket')
    page.once('dialog', (dialog) => {
      void dialog.accept()
    })
    await page.getByRole('button', { name: 'Revoke this agent' }).click()
    await page.locator('#agent-state').filter({ hasText: 'revoked' }).waitFor()
    await page.locator('#agent-revocations tr', { hasText: 'leaked in a ticket' }).waitFor()
    assert.equal(await page.getByRole('button', { name: 'Revoke this agent' }).isDisabled(), true)
    await eventually(async () => (await authorize(gw.url, payToken, { action: { tool: 'crm.read', params: {} } })).status === 401, 10_000, 50)
    // The refusal is in the log too, and the agent page shows it.
    await page.locator('#agent-decisions tr', { hasText: 'refused' }).first().waitFor({ timeout: 10_000 })
    await shot(page, '11-agent-revoked')
  })

  test('past a page of revocations in force, the agent page and the revocations list still show the newest entries', async () => {
    // 1,000 entries fill the list's first page (it is paged in seq order): the agent's revocation comes after them.
    for (let i = 0; i < 1000; i += 50)
      await Promise.all(Array.from({ length: 50 }, (_, j) => env.admin('POST', '/revocations', { type: 'jti', value: `filler-${i + j}`, tenant: env.tenant })))
    await env.admin('POST', '/revocations', { type: 'agent', value: 'other-bot', tenant: env.tenant, reason: 'past the first page' })
    await page.goto(`${env.issuer}/console/#agents`)
    await page.locator('tr[data-agent="other-bot"]').getByRole('link', { name: 'other-bot' }).click()
    await page
      .locator('#agent-name')
      .filter({ hasText: `${env.tenant}/other-bot` })
      .waitFor()
    await page
      .locator('#agent-state')
      .filter({ hasText: /^(revoked|active)$/ })
      .waitFor()
    assert.equal(await page.locator('#agent-state').textContent(), 'revoked')
    await page.locator('#agent-revocations tr', { hasText: 'past the first page' }).waitFor()
    await page.goto(`${env.issuer}/console/#revocations`)
    await page.locator('#revocations-body tr', { hasText: 'past the first page' }).waitFor({ timeout: 10_000 })
    assert.ok((await page.locator('#revocations-body tr').count()) > 1000)
  })

  test('the audit log opens on the newest events', async () => {
    const { events } = (await env.admin('GET', `/audit?tenant=${env.tenant}&order=desc&limit=1`)) as { events: Array<{ id: number }> }
    await page.goto(`${env.issuer}/console/#audit`)
    await page.locator('#audit-body tr').nth(3).waitFor()
    const ids = (await texts('#audit-body tr td:first-child')).map(Number)
    for (let i = 1; i < ids.length; i++) assert.ok(ids[i - 1]! > ids[i]!, 'ids decrease down the page')
    assert.ok(ids[0]! >= events[0]!.id, 'the first row is the newest event of the tenant')
  })
})
