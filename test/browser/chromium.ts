/**
 * What the console's browser tests share: Debian's Chromium driven by
 * playwright-core with the flags the CI machine needs, a fresh profile per
 * context, the console's keyboard login and the approval policy the pages
 * show.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium, type BrowserContext, type Page } from 'playwright-core'

export const CHROMIUM = '/usr/bin/chromium'
/** Screenshots go here. */
export const OUT = join('test-output', 'browser')

/** Skip reason without Chromium, false with it; with AEGIS_REQUIRE_SERVICES=1 a missing Chromium fails instead. */
export function skipWithoutChromium(): string | false {
  if (existsSync(CHROMIUM)) return false
  const msg = `${CHROMIUM} not found: install Debian's chromium package to run the console browser tests`
  if (process.env.AEGIS_REQUIRE_SERVICES === '1') throw new Error(`AEGIS_REQUIRE_SERVICES=1 and ${msg}`)
  return msg
}

/** crm.read allowed; a transfer above 1000 needs the finance group's approval. */
export const APPROVAL_CEDAR = `
@id("crm-read")
permit (principal, action == Action::"crm.read", resource);

@id("transfer-permit")
permit (principal, action == Action::"payments.transfer", resource);

@id("transfer-approval")
@approval("finance")
@reason("transfers above 1000 need a finance approver")
forbid (principal, action == Action::"payments.transfer", resource)
when { context.params has amount && context.params.amount > 1000 }
unless { context.override };
`

/** A headless Chromium context on a fresh profile; close() also removes the profile. */
export async function launchChromium(viewport = { width: 1366, height: 900 }): Promise<{ context: BrowserContext; close(): Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'aegis-chromium-'))
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: CHROMIUM,
    headless: true,
    viewport,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  })
  return {
    context,
    close: async () => {
      await context.close()
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

/** Logs in to the console at `issuer` with the keyboard only: the token field has focus on load; Enter submits. */
export async function consoleLogin(page: Page, issuer: string, token: string): Promise<void> {
  await page.goto(`${issuer}/console/`)
  await page.locator('#token').waitFor()
  await page.keyboard.type(token)
  await page.keyboard.press('Enter')
  await page.locator('#nav').waitFor({ state: 'visible' })
}
