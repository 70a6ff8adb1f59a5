// Rewrites docs/openapi.json from a control plane built here (embedded
// SQLite in a temporary directory, never listening): `npm run openapi`.
// test/integration/control-plane/openapi.test.ts fails when the committed
// file differs from what a running control plane serves.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { loadConfig } from '../src/config/load.js'
import { buildControlPlane } from '../src/control-plane/index.js'
import { openApiText } from '../src/control-plane/openapi.js'

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'aegis-openapi-'))
  try {
    const config = loadConfig({ env: {}, overrides: { dataDir: dir, kek: randomBytes(32).toString('hex'), logLevel: 'silent' } })
    const cp = await buildControlPlane(config)
    try {
      await cp.app.ready()
      const out = new URL('../docs/openapi.json', import.meta.url)
      writeFileSync(out, openApiText(cp.app))
      console.log(`wrote ${out.pathname}`)
    } finally {
      await cp.close()
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

await main()
