import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import pg from 'pg'
import { auditCommand } from '../../../src/cli/commands/audit.js'
import type { CliContext } from '../../../src/cli/context.js'
import type { AegisConfig } from '../../../src/config/schema.js'
import { createAuditWriter, verifyAuditStore } from '../../../src/control-plane/audit/index.js'
import { createKeyManager } from '../../../src/control-plane/keys/index.js'
import { Metrics } from '../../../src/observability/metrics.js'
import { openStore } from '../../../src/store/index.js'
import { freshPostgresSchema, skipWithoutPostgres } from '../../helpers/services.js'
import { logger, manualClock, testConfig } from '../../unit/keys/fixture.js'

/** Direct SQL on the store's own database, as an attacker with database access would write it. */
interface Backend {
  config: AegisConfig
  sql(text: string): Promise<void>
  cleanup(): Promise<void>
}

async function sqliteBackend(): Promise<Backend> {
  const config = testConfig()
  return {
    config,
    async sql(text) {
      const db = new Database(join(config.dataDir, 'aegis.db'))
      try {
        db.exec(text)
      } finally {
        db.close()
      }
    },
    async cleanup() {
      rmSync(config.dataDir, { recursive: true, force: true })
    },
  }
}

async function postgresBackend(): Promise<Backend> {
  const schema = await freshPostgresSchema()
  const config = testConfig({ databaseUrl: schema.url })
  return {
    config,
    async sql(text) {
      const c = new pg.Client({ connectionString: schema.url })
      await c.connect()
      try {
        await c.query(text)
      } finally {
        await c.end()
      }
    },
    async cleanup() {
      await schema.drop()
      rmSync(config.dataDir, { recursive: true, force: true })
    },
  }
}

/** Six events on chain cp-t and three on cp-u, closed (so each head is checkpointed). */
async function seed(config: AegisConfig): Promise<Map<number, number>> {
  const store = await openStore(config, logger)
  const clock = manualClock()
  const keys = await createKeyManager({ config, store, clock, logger, metrics: new Metrics() })
  const t = await createAuditWriter({ store, keys, clock, logger, chainId: 'cp-t', checkpointIntervalMs: 60_000 })
  const u = await createAuditWriter({ store, keys, clock, logger, chainId: 'cp-u', checkpointIntervalMs: 60_000 })
  for (let i = 1; i <= 6; i++) {
    clock.advance(10)
    await Promise.all([
      t.append({ type: 'token.issued', tenant: 'acme', actor: 'agent:acme/bot', subject: `jti-${i}`, data: { i } }),
      i <= 3 ? u.append({ type: 'decision', data: { i } }) : undefined,
    ])
  }
  await t.close()
  await u.close()
  await keys.stop()
  const ids = new Map((await store.audit.chain('cp-t', 0, 100)).map((e) => [e.chainSeq, e.id]))
  await store.close()
  return ids
}

async function runCli(config: AegisConfig, argv: string[]): Promise<{ code: number; out: string[]; err: string[] }> {
  const out: string[] = []
  const err: string[] = []
  const ctx: CliContext = { config, out: (l) => out.push(l), err: (l) => err.push(l) }
  return { code: await auditCommand(argv, ctx), out, err }
}

async function verifyStore(config: AegisConfig) {
  const store = await openStore(config, logger)
  try {
    return await verifyAuditStore(store)
  } finally {
    await store.close()
  }
}

const scenarios: Array<{
  name: string
  tamper: (b: Backend, ids: Map<number, number>) => Promise<void>
  expect: (ids: Map<number, number>) => { id: number | null; seq: number; reason: RegExp }
}> = [
  {
    name: 'an altered row',
    tamper: (b) => b.sql(`UPDATE audit_events SET actor = 'agent:acme/someone-else' WHERE chain_id = 'cp-t' AND chain_seq = 3`),
    expect: (ids) => ({ id: ids.get(3)!, seq: 3, reason: /altered/ }),
  },
  {
    name: 'a deleted middle row',
    tamper: (b) => b.sql(`DELETE FROM audit_events WHERE chain_id = 'cp-t' AND chain_seq = 3`),
    expect: (ids) => ({ id: ids.get(4)!, seq: 4, reason: /chain_seq 3 missing/ }),
  },
  {
    name: 'a deleted newest row',
    tamper: (b) => b.sql(`DELETE FROM audit_events WHERE chain_id = 'cp-t' AND chain_seq = 6`),
    expect: () => ({ id: null, seq: 6, reason: /newest events deleted/ }),
  },
  {
    name: 'two swapped rows',
    tamper: (b) =>
      b.sql(`UPDATE audit_events SET chain_seq = -1 WHERE chain_id = 'cp-t' AND chain_seq = 3;
      UPDATE audit_events SET chain_seq = 3 WHERE chain_id = 'cp-t' AND chain_seq = 4;
      UPDATE audit_events SET chain_seq = 4 WHERE chain_id = 'cp-t' AND chain_seq = -1`),
    expect: (ids) => ({ id: ids.get(4)!, seq: 3, reason: /altered/ }),
  },
  {
    name: 'two rows with swapped ids',
    // Ids are swapped through a free value, as the primary key requires.
    tamper: async (b, ids) => {
      await b.sql(`UPDATE audit_events SET id = -1 WHERE chain_id = 'cp-t' AND chain_seq = 3`)
      await b.sql(`UPDATE audit_events SET id = ${ids.get(3)} WHERE chain_id = 'cp-t' AND chain_seq = 4`)
      await b.sql(`UPDATE audit_events SET id = ${ids.get(4)} WHERE chain_id = 'cp-t' AND chain_seq = 3`)
    },
    expect: (ids) => ({ id: ids.get(3)!, seq: 4, reason: /reordered/ }),
  },
]

for (const [name, make, skip] of [
  ['SQLite', sqliteBackend, false],
  ['PostgreSQL', postgresBackend, await skipWithoutPostgres()],
] as const) {
  describe(`audit verify on ${name}`, { skip }, () => {
    test('a whole log verifies (exit 0), exports, and the export verifies offline', async (t) => {
      const b = await make()
      t.after(() => b.cleanup())
      await seed(b.config)
      const ok = await runCli(b.config, ['verify'])
      assert.equal(ok.code, 0, ok.err.join('\n'))
      assert.match(ok.out.join('\n'), /whole: 9 events in 2 chains, 2 signed checkpoints/)

      const file = join(mkdtempSync(join(tmpdir(), 'aegis-export-')), 'audit.jsonl')
      t.after(() => rmSync(file, { force: true }))
      assert.equal((await runCli(b.config, ['export', '--out', file])).code, 0)
      const lines = readFileSync(file, 'utf8').trim().split('\n')
      assert.equal(lines.length, 1 + 9 + 2)
      assert.ok(!readFileSync(file, 'utf8').includes('"d":'), 'no private key material')
      assert.equal((await runCli(b.config, ['verify-export', file])).code, 0)
      // Lines carry the hashed and signed time as ts_ms, the header its export time in epoch seconds.
      const header = JSON.parse(lines[0]!) as { format: string; exported_at: number }
      assert.equal(header.format, 'aegis-audit-export/2')
      assert.ok(Number.isInteger(header.exported_at) && header.exported_at < 1e11, 'exported_at in epoch seconds')
      assert.ok(
        lines.slice(1).every((l) => {
          const o = JSON.parse(l) as Record<string, unknown>
          return Number.isInteger(o.ts_ms) && !('ts' in o)
        }),
      )
      // An export of the first format (the same times named ts) still verifies; a changed time does not, in either.
      const v1 = lines.map((l, i) => (i === 0 ? l.replace('aegis-audit-export/2', 'aegis-audit-export/1') : l.replace('"ts_ms":', '"ts":')))
      writeFileSync(file, v1.join('\n'))
      assert.equal((await runCli(b.config, ['verify-export', file])).code, 0)
      const shifted = (l: string) => l.replace(/"ts(_ms)?":(\d+)/, (_m, unit: string | undefined, n: string) => `"ts${unit ?? ''}":${Number(n) + 1}`)
      for (const form of [lines, v1]) {
        writeFileSync(file, form.map((l) => (l.includes('"jti-2"') ? shifted(l) : l)).join('\n'))
        assert.equal((await runCli(b.config, ['verify-export', file])).code, 1)
      }
      writeFileSync(file, lines.join('\n'))

      // Offline, an edited line is caught.
      const edited = lines.map((l) => (l.includes('"jti-2"') ? l.replace('"jti-2"', '"jti-X"') : l))
      writeFileSync(file, edited.join('\n'))
      const bad = await runCli(b.config, ['verify-export', file])
      assert.equal(bad.code, 1)
      assert.match(bad.err.join('\n'), /first bad event: id \d+ chain cp-t seq 2: .*altered/)

      // Keys a forger brings in the header do not help when the verifier supplies the real ones.
      const jwksFile = `${file}.jwks`
      writeFileSync(jwksFile, JSON.stringify({ keys: [] }))
      t.after(() => rmSync(jwksFile, { force: true }))
      writeFileSync(file, lines.join('\n'))
      const noKeys = await runCli(b.config, ['verify-export', file, '--jwks', jwksFile])
      assert.equal(noKeys.code, 1)
      assert.match(noKeys.err.join('\n'), /unknown kid/)
    })

    for (const s of scenarios) {
      test(`verify detects ${s.name} and names the first bad event`, async (t) => {
        const b = await make()
        t.after(() => b.cleanup())
        const ids = await seed(b.config)
        assert.equal((await verifyStore(b.config)).ok, true)
        await s.tamper(b, ids)
        const want = s.expect(ids)
        const report = await verifyStore(b.config)
        assert.equal(report.ok, false)
        assert.equal(report.firstBad?.chainId, 'cp-t')
        assert.equal(report.firstBad?.chainSeq, want.seq)
        assert.equal(report.firstBad?.id, want.id)
        assert.match(report.firstBad!.reason, want.reason)
        assert.equal(report.problems.length, 1, 'the other chain is whole')
        const cli = await runCli(b.config, ['verify'])
        assert.equal(cli.code, 1)
        assert.match(cli.err.join('\n'), new RegExp(`first bad event: id ${want.id ?? '\\(missing\\)'} chain cp-t seq ${want.seq}: `))
      })
    }
  })
}
