/**
 * `aegis audit verify` against an insider who can write the database: every
 * checkpoint is checked (not only the latest), `--jwks` pins the keys outside
 * the database so a log rewritten and re-signed with a key the insider added
 * fails, `--heads` catches the newest events cut together with their
 * checkpoints, and an export carries every checkpoint so it verifies offline
 * with the pinned keys. SQLite and PostgreSQL.
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { generateKeyPairSync, randomBytes } from 'node:crypto'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { createServer } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import pg from 'pg'
import { CompactSign, exportJWK } from 'jose'
import { auditCommand } from '../../../src/cli/commands/audit.js'
import type { CliContext } from '../../../src/cli/context.js'
import type { AegisConfig } from '../../../src/config/schema.js'
import { CHECKPOINT_TYP, createAuditWriter, eventHash } from '../../../src/control-plane/audit/index.js'
import { createKeyManager } from '../../../src/control-plane/keys/index.js'
import { Metrics } from '../../../src/observability/metrics.js'
import { openStore } from '../../../src/store/index.js'
import { freshPostgresSchema, skipWithoutPostgres } from '../../helpers/services.js'
import { logger, manualClock, testConfig } from '../../unit/keys/fixture.js'

interface Backend {
  config: AegisConfig
  sql(text: string, args?: unknown[]): Promise<void>
  cleanup(): Promise<void>
}

async function sqliteBackend(): Promise<Backend> {
  const config = testConfig()
  return {
    config,
    async sql(text, args = []) {
      const db = new Database(join(config.dataDir, 'aegis.db'))
      try {
        db.prepare(text).run(...args)
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
    async sql(text, args = []) {
      const c = new pg.Client({ connectionString: schema.url })
      await c.connect()
      let i = 0
      try {
        await c.query(
          text.replace(/\?/g, () => `$${++i}`),
          args,
        )
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

/** Six events on chain cp-t, a checkpoint after every second one (seq 2, 4, 6); three on cp-u. */
async function seed(config: AegisConfig): Promise<void> {
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
    if (i % 2 === 0) await t.checkpoint()
  }
  await t.close()
  await u.close()
  await keys.stop()
  await store.close()
}

async function runCli(config: AegisConfig, argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = []
  const err: string[] = []
  const ctx: CliContext = { config, out: (l) => out.push(l), err: (l) => err.push(l) }
  return { code: await auditCommand(argv, ctx), out: out.join('\n'), err: err.join('\n') }
}

/** What an insider does: adds an Ed25519 key of their own to the database and signs checkpoints with it. */
async function insiderKey(config: AegisConfig): Promise<{ kid: string; sign(payload: Record<string, unknown>): Promise<string> }> {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519')
  const kid = `insider-${randomBytes(4).toString('hex')}`
  const store = await openStore(config, logger)
  try {
    await store.keys.insert({
      kid,
      alg: 'EdDSA',
      state: 'retired',
      publicJwk: await exportJWK(publicKey),
      encryptedPrivateKey: 'x',
      createdAt: 0,
      activatesAt: 0,
      deactivatedAt: 0,
      retiresAt: 0,
      revoked: false,
    })
  } finally {
    await store.close()
  }
  return {
    kid,
    sign: (payload) =>
      new CompactSign(new TextEncoder().encode(JSON.stringify(payload))).setProtectedHeader({ alg: 'EdDSA', typ: CHECKPOINT_TYP, kid }).sign(privateKey),
  }
}

/** Rewrites event 5 of cp-t (and the link of 6), then re-signs the head at 6 with the insider's key. */
async function rewriteAndResign(b: Backend): Promise<string> {
  const store = await openStore(b.config, logger)
  const events = await store.audit.chain('cp-t', 0, 100)
  await store.close()
  const e5 = { ...events[4]!, actor: 'agent:acme/someone-else' }
  e5.hash = eventHash(e5)
  const e6 = { ...events[5]!, prevHash: e5.hash }
  e6.hash = eventHash(e6)
  await b.sql('UPDATE audit_events SET actor = ?, hash = ? WHERE chain_id = ? AND chain_seq = 5', [e5.actor, e5.hash, 'cp-t'])
  await b.sql('UPDATE audit_events SET prev_hash = ?, hash = ? WHERE chain_id = ? AND chain_seq = 6', [e6.prevHash, e6.hash, 'cp-t'])
  const insider = await insiderKey(b.config)
  const ts = events[5]!.ts + 1
  const signature = await insider.sign({ chain_id: 'cp-t', chain_seq: 6, head_hash: e6.hash, ts })
  await b.sql('UPDATE audit_checkpoints SET head_hash = ?, ts = ?, kid = ?, signature = ? WHERE chain_id = ? AND chain_seq = 6', [
    e6.hash,
    ts,
    insider.kid,
    signature,
    'cp-t',
  ])
  return insider.kid
}

function tempFile(t: { after: (fn: () => void) => void }, name: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'aegis-pinned-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  return join(dir, name)
}

for (const [name, make, skip] of [
  ['SQLite', sqliteBackend, false],
  ['PostgreSQL', postgresBackend, await skipWithoutPostgres()],
] as const) {
  describe(`audit verify with pinned keys on ${name}`, { skip }, () => {
    test('every checkpoint is verified: a broken signature on an older checkpoint is named', async (t) => {
      const b = await make()
      t.after(() => b.cleanup())
      await seed(b.config)
      const ok = await runCli(b.config, ['verify'])
      assert.equal(ok.code, 0, ok.err)
      assert.match(ok.out, /9 events in 2 chains, 4 signed checkpoints verified/)
      // The middle checkpoint's signature loses its last characters; the latest one is untouched.
      await b.sql(`UPDATE audit_checkpoints SET signature = substr(signature, 1, length(signature) - 4) || 'AAAA' WHERE chain_id = 'cp-t' AND chain_seq = 4`)
      const bad = await runCli(b.config, ['verify'])
      assert.equal(bad.code, 1)
      assert.match(bad.err, /first bad event: id \(missing\) chain cp-t seq 4: checkpoint at chain_seq 4: signature does not verify/)
    })

    test(
      'a log rewritten and re-signed with a key added to the database passes without pinned keys and fails with them, naming the checkpoint and ' + 'its kid',
      async (t) => {
        const b = await make()
        t.after(() => b.cleanup())
        await seed(b.config)
        const keys = tempFile(t, 'keys.json')
        const pin = await runCli(b.config, ['pin-keys', '--jwks', keys, '--from-store'])
        assert.equal(pin.code, 0, pin.err)
        assert.match(pin.out, /pinned 1 new key from the database/)
        assert.equal((await runCli(b.config, ['verify', '--jwks', keys])).code, 0)

        const kid = await rewriteAndResign(b)
        // With keys read from the database the insider wins: that is why keys are pinned.
        const fooled = await runCli(b.config, ['verify'])
        assert.equal(fooled.code, 0, fooled.err)
        assert.match(fooled.err, /pin them/)

        const caught = await runCli(b.config, ['verify', '--jwks', keys])
        assert.equal(caught.code, 1)
        assert.match(
          caught.err,
          new RegExp(
            `first bad event: id \\(missing\\) chain cp-t seq 6: checkpoint at chain_seq 6 is signed by unknown kid ${kid}: not among the pinned keys`,
          ),
        )
      },
    )

    test('the newest events cut together with their checkpoints are caught against the heads of an earlier run', async (t) => {
      const b = await make()
      t.after(() => b.cleanup())
      await seed(b.config)
      const keys = tempFile(t, 'keys.json')
      const heads = tempFile(t, 'heads.json')
      assert.equal((await runCli(b.config, ['pin-keys', '--jwks', keys, '--from-store'])).code, 0)
      const first = await runCli(b.config, ['verify', '--jwks', keys, '--heads', heads])
      assert.equal(first.code, 0, first.err)
      const recorded = JSON.parse(readFileSync(heads, 'utf8')) as { chains: Record<string, { chain_seq: number }> }
      assert.equal(recorded.chains['cp-t']?.chain_seq, 6)
      assert.equal(recorded.chains['cp-u']?.chain_seq, 3)

      // Cut events 5 and 6 and the checkpoint that covered them: what is left is whole and properly signed.
      await b.sql(`DELETE FROM audit_events WHERE chain_id = 'cp-t' AND chain_seq > 4`)
      await b.sql(`DELETE FROM audit_checkpoints WHERE chain_id = 'cp-t' AND chain_seq > 4`)
      assert.equal((await runCli(b.config, ['verify', '--jwks', keys])).code, 0, 'signatures alone cannot show a clean cut')

      const caught = await runCli(b.config, ['verify', '--jwks', keys, '--heads', heads])
      assert.equal(caught.code, 1)
      assert.match(caught.err, /chain cp-t seq 5: chain_seq 5\.\.6 missing: a previous verification saw the chain signed up to 6/)
      assert.equal((JSON.parse(readFileSync(heads, 'utf8')) as typeof recorded).chains['cp-t']?.chain_seq, 6, 'a broken log never lowers the recorded heads')
    })

    test('an export carries every checkpoint and verifies offline with the pinned keys; a re-signed export fails with them', async (t) => {
      const b = await make()
      t.after(() => b.cleanup())
      await seed(b.config)
      const keys = tempFile(t, 'keys.json')
      assert.equal((await runCli(b.config, ['pin-keys', '--jwks', keys, '--from-store'])).code, 0)
      const file = tempFile(t, 'audit.jsonl')
      assert.equal((await runCli(b.config, ['export', '--out', file])).code, 0)
      const lines = readFileSync(file, 'utf8').trim().split('\n')
      const checkpoints = lines.filter((l) => l.includes('"kind":"checkpoint"'))
      assert.deepEqual(
        checkpoints.map((l) => (JSON.parse(l) as { chain_seq: number }).chain_seq),
        [2, 4, 6, 3],
      )
      const offline = await runCli(b.config, ['verify', '--file', file, '--jwks', keys])
      assert.equal(offline.code, 0, offline.err)
      assert.match(offline.out, /4 signed checkpoints verified against the pinned keys/)

      // An insider rewrites the log and re-signs its head; the export's header now carries their key too.
      const kid = await rewriteAndResign(b)
      assert.equal((await runCli(b.config, ['export', '--out', file])).code, 0)
      const header = JSON.parse(readFileSync(file, 'utf8').split('\n')[0]!) as { jwks: { keys: Array<{ kid: string }> } }
      assert.ok(header.jwks.keys.some((k) => k.kid === kid))
      assert.equal((await runCli(b.config, ['verify-export', file])).code, 0, "with the header's keys the forgery passes")
      const caught = await runCli(b.config, ['verify', '--file', file, '--jwks', keys])
      assert.equal(caught.code, 1)
      assert.match(caught.err, new RegExp(`chain cp-t seq 6: checkpoint at chain_seq 6 is signed by unknown kid ${kid}`))
    })
  })
}

test('pin-keys adds the keys of a JWKS URL, never drops one, and refuses a kid whose key changed', async (t) => {
  const config = testConfig()
  t.after(() => rmSync(config.dataDir, { recursive: true, force: true }))
  const key = async () => ({ ...(await exportJWK(generateKeyPairSync('ed25519').publicKey)), alg: 'EdDSA', use: 'sig' })
  const a = { ...(await key()), kid: 'a' }
  const b1 = { ...(await key()), kid: 'b' }
  let served: unknown[] = [a]
  const server = createServer((_req, res) => {
    res.setHeader('content-type', 'application/json')
    res.end(JSON.stringify({ keys: served }))
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.after(() => new Promise<void>((r) => server.close(() => r())))
  const url = `http://127.0.0.1:${(server.address() as { port: number }).port}/.well-known/jwks.json`
  const keys = tempFile(t, 'keys.json')

  assert.equal((await runCli(config, ['pin-keys', '--jwks', keys, '--from', url])).code, 0)
  served = [b1] // a rotated out of the JWKS: it stays pinned
  const second = await runCli(config, ['pin-keys', '--jwks', keys, '--from', url])
  assert.equal(second.code, 0, second.err)
  assert.match(second.out, /pinned 1 new key .*\(b\); .* holds 2/)
  const pinned = JSON.parse(readFileSync(keys, 'utf8')) as { keys: Array<{ kid: string; x: string }> }
  assert.deepEqual(
    pinned.keys.map((k) => k.kid),
    ['a', 'b'],
  )

  served = [{ ...(await key()), kid: 'a' }]
  const changed = await runCli(config, ['pin-keys', '--jwks', keys, '--from', url])
  assert.equal(changed.code, 1)
  assert.match(changed.err, /kid a .* is not the key pinned under that kid/)
  assert.deepEqual(JSON.parse(readFileSync(keys, 'utf8')), pinned, 'nothing written')

  served = [{ ...a, d: 'private' }]
  const priv = await runCli(config, ['pin-keys', '--jwks', keys, '--from', url])
  assert.equal(priv.code, 1)
  assert.match(priv.err, /holds a private key/)
  assert.ok(existsSync(keys))
})
