/**
 * Regenerates the README's console screenshots from a real control plane and
 * gateway with some activity: docs/console.png (KPIs), and beside it
 * console-decisions.png (the decision log, live tail on),
 * console-agent.png (one agent's page), console-approvals.png (a pending
 * approval with the policy and reason that asked for it) and
 * console-approval.png (that request on its own page, the URL an MCP client
 * shows its user and notifications link to):
 *
 *   node --import tsx scripts/screenshot.ts [out.png]
 *
 * Both roles share a hand-advanced clock that starts 58 minutes ago (one step a minute) and
 * steps forward, so the hour of charted history is made of real token
 * issuances, gateway decisions (reported through the gateway's stats
 * channel), replays and a revocation, not drawn numbers. Needs
 * /usr/bin/chromium.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { loadConfig } from '../src/config/load.js'
import { buildControlPlane } from '../src/control-plane/index.js'
import { launchChromium } from '../test/browser/chromium.js'
import { freePort } from '../test/helpers/ports.js'
import { buildGateway } from '../src/gateway/index.js'
import { ManualClock } from '../src/lib/clock.js'
import { silentLogger } from '../src/observability/logger.js'

const OUT = process.argv[2] ?? 'docs/console.png'
const DIR = dirname(OUT)
const STEPS = 57
const STEP_MS = 60_000

const CEDAR = `
@id("crm-read")
permit (principal, action == Action::"crm.read", resource);

@id("transfer")
@risk("high")
@sanitize("redact:/params/memo")
permit (principal, action == Action::"payments.transfer", resource)
when { context.params has amount && context.params.amount <= 50000 };

@id("transfer-approval")
@approval("finance")
@reason("transfers above 1000 need a finance approver")
forbid (principal, action == Action::"payments.transfer", resource)
when { context.params has amount && context.params.amount > 1000 }
unless { context.override };
`

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'aegis-shot-'))
  const adminToken = `adm_${randomBytes(32).toString('base64url')}`
  const gatewayToken = `gw_${randomBytes(32).toString('base64url')}`
  const port = await freePort()
  const issuer = `http://127.0.0.1:${port}`
  const clock = new ManualClock(Date.now() - 58 * 60_000)
  const base = {
    dataDir: dir,
    kek: randomBytes(32).toString('hex'),
    logLevel: 'silent',
    adminToken,
    gatewayToken,
    rateLimit: { perClient: 1_000_000, perIp: 10_000_000 },
  }
  const cp = await buildControlPlane(loadConfig({ env: {}, overrides: { ...base, issuer } }), { clock, logger: silentLogger() })
  await cp.app.listen({ port, host: '127.0.0.1' })
  const gwConfig = (extra: Record<string, unknown> = {}) => loadConfig({ env: {}, overrides: { ...base, adminToken: undefined, issuer, ...extra } })
  const gw = await buildGateway(gwConfig(), { clock, logger: silentLogger(), gatewayId: 'gw-eu-1' })
  const shadow = await buildGateway(gwConfig({ gateway: { shadow: true } }), { clock, logger: silentLogger(), gatewayId: 'gw-shadow' })
  await gw.app.listen({ port: 0, host: '127.0.0.1' })
  await shadow.app.listen({ port: 0, host: '127.0.0.1' })
  await Promise.all([gw.ready, shadow.ready])
  const gwUrl = `http://127.0.0.1:${(gw.app.server.address() as { port: number }).port}`
  const shadowUrl = `http://127.0.0.1:${(shadow.app.server.address() as { port: number }).port}`

  const admin = async (method: string, path: string, body?: unknown): Promise<Record<string, unknown>> => {
    const res = await fetch(`${issuer}/admin/v1${path}`, {
      method,
      headers: { authorization: `Bearer ${adminToken}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      ...(body ? { body: JSON.stringify(body) } : {}),
    })
    const text = await res.text()
    if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`)
    return text ? (JSON.parse(text) as Record<string, unknown>) : {}
  }
  const creds: Record<string, { client_id: string; client_secret: string }> = {}
  await admin('POST', '/tenants', { id: 'acme', name: 'Acme Corp' })
  const policy = await admin('POST', '/tenants/acme/policies', { version: '2026-11-29.1', cedar: CEDAR, mode: 'enforce' })
  await admin('POST', `/tenants/acme/policies/${policy.id as string}/activate`)
  for (const [agent, ttl] of [
    ['billing-bot', 600],
    ['crm-sync', 900],
    ['support-agent', 300],
  ] as const) {
    await admin('POST', '/tenants/acme/agents', {
      agent_id: agent,
      scopes: ['payments:write', 'crm:read'],
      capabilities: ['crm.read', 'payments.transfer', 'files.delete'],
      max_ttl_seconds: ttl,
    })
    creds[agent] = (await admin('POST', `/tenants/acme/agents/${agent}/bootstrap-credentials`, { ttl_seconds: 86_400, single_use: false })) as {
      client_id: string
      client_secret: string
    }
  }
  const token = async (agent: string): Promise<string> => {
    const c = creds[agent]!
    const res = await fetch(`${issuer}/oauth2/token`, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        authorization: `Basic ${Buffer.from(`${c.client_id}:${c.client_secret}`).toString('base64')}`,
      },
      body: 'grant_type=client_credentials',
    })
    return ((await res.json()) as { access_token: string }).access_token
  }
  const call = (url: string, t: string, tool: string, params: Record<string, unknown> = {}) =>
    fetch(`${url}/v1/authorize`, {
      method: 'POST',
      headers: { authorization: `Bearer ${t}`, 'content-type': 'application/json' },
      body: JSON.stringify({ action: { tool, params } }),
    })

  // Deterministic "traffic": a daytime-ish wave with a burst in the middle.
  for (let step = 0; step < STEPS; step++) {
    const load = 1 + Math.round(3 * Math.sin(step / 8) ** 2) + (step >= 34 && step <= 37 ? 5 : 0)
    for (let i = 0; i < load; i++) {
      const agent = ['billing-bot', 'crm-sync', 'support-agent'][i % 3]!
      if (agent === 'support-agent' && step >= 44) continue // revoked below
      const t = await token(agent)
      await call(gwUrl, t, 'crm.read')
      if (i % 2 === 0) await call(gwUrl, t, 'crm.read')
      if (i % 3 === 1) await call(gwUrl, t, 'files.delete')
      if (i % 4 === 0) await call(shadowUrl, t, 'files.delete')
      if (step % 9 === 4 && i === 0) {
        await call(gwUrl, t, 'payments.transfer', { amount: 120 })
        await call(gwUrl, t, 'payments.transfer', { amount: 120 }) // replay of a single-use token
      }
    }
    if (step === 44) await admin('POST', '/revocations', { type: 'agent', value: 'support-agent', tenant: 'acme', reason: 'credential leaked in a ticket' })
    await sleep(1_200) // one stats report from each gateway
    clock.advance(STEP_MS)
  }
  // Stays pending in the approvals queue; approvers see the IBAN (a secret-looking name) and the memo (redacted by the policy) masked.
  await call(gwUrl, await token('billing-bot'), 'payments.transfer', {
    amount: 7_500,
    currency: 'EUR',
    to_iban: 'DE89 3704 0044 0532 0130 00',
    memo: 'Q4 bonus, J. Doe',
  })
  await sleep(1_200)

  const browser = await launchChromium({ width: 1366, height: 860 })
  const ctx = browser.context
  try {
    const page = await ctx.newPage()
    await page.goto(`${issuer}/console/`)
    await page.fill('#token', adminToken)
    await page.press('#token', 'Enter')
    await page.locator('#kpi-decisions tr[data-kind="allow"]').waitFor()
    await sleep(500)
    await page.screenshot({ path: OUT })
    console.log(`wrote ${OUT}`)

    await page.goto(`${issuer}/console/#decisions`)
    await page.locator('#decisions-body tr[data-decision-id]').first().waitFor()
    await page.locator('#decisions-tail').check()
    await page.locator('#decisions-status').filter({ hasText: 'checked' }).waitFor()
    await page.screenshot({ path: join(DIR, 'console-decisions.png') })
    console.log(`wrote ${join(DIR, 'console-decisions.png')}`)

    await page.goto(`${issuer}/console/#agent/billing-bot`)
    await page.locator('#agent-tokens tr[data-jti]').first().waitFor()
    await page.locator('#agent-decisions tr[data-decision-id]').first().waitFor()
    await page.locator('#agent-approvals tr[data-approval]').first().waitFor()
    await page.screenshot({ path: join(DIR, 'console-agent.png'), fullPage: true })
    console.log(`wrote ${join(DIR, 'console-agent.png')}`)

    await page.goto(`${issuer}/console/#approvals`)
    await page.locator('#approvals-body tr[data-approval]').first().waitFor()
    await page.screenshot({ path: join(DIR, 'console-approvals.png') })
    console.log(`wrote ${join(DIR, 'console-approvals.png')}`)

    const pending = (await admin('GET', '/approvals?status=pending&tenant=acme')) as { approvals?: Array<{ id: string }> }
    await page.goto(`${issuer}/console/approvals/${pending.approvals![0]!.id}`)
    await page.locator('#decide').waitFor()
    await page.screenshot({ path: join(DIR, 'console-approval.png'), fullPage: true })
    console.log(`wrote ${join(DIR, 'console-approval.png')}`)
  } finally {
    await browser.close()
    await gw.close()
    await shadow.close()
    await cp.close()
    rmSync(dir, { recursive: true, force: true })
  }
}

await main()
