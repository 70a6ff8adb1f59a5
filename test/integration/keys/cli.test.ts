import { test } from 'node:test'
import assert from 'node:assert/strict'
import { rmSync } from 'node:fs'
import { keysCommand } from '../../../src/cli/commands/keys.js'
import { auditCommand } from '../../../src/cli/commands/audit.js'
import type { CliContext } from '../../../src/cli/context.js'
import type { AegisConfig } from '../../../src/config/schema.js'
import { openStore } from '../../../src/store/index.js'
import { logger, testConfig } from '../../unit/keys/fixture.js'

async function run(cmd: typeof keysCommand, config: AegisConfig, argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = []
  const err: string[] = []
  const ctx: CliContext = { config, out: (l) => out.push(l), err: (l) => err.push(l) }
  const code = await cmd(argv, ctx)
  return { code, out: out.join('\n'), err: err.join('\n') }
}

test('aegis keys list|rotate works on the configured store and never prints private material', async (t) => {
  const config = testConfig()
  t.after(() => rmSync(config.dataDir, { recursive: true, force: true }))

  const help = await run(keysCommand, config, ['--help'])
  assert.equal(help.code, 0)
  assert.match(help.out, /aegis keys list/)
  const unknown = await run(keysCommand, config, ['spin'])
  assert.equal(unknown.code, 2)
  assert.match(unknown.err, /unknown subcommand "spin"/)
  assert.equal((await run(keysCommand, config, ['list', '--emergency'])).code, 2)
  assert.equal((await run(keysCommand, config, ['rotate', '--bogus'])).code, 2)

  const empty = await run(keysCommand, config, ['list'])
  assert.equal(empty.code, 0)
  assert.match(empty.out, /no keys yet/)

  // Without a KEK, rotate refuses and says what to set.
  const noKek = await run(keysCommand, { ...config, kek: undefined }, ['rotate'])
  assert.equal(noKek.code, 1)
  assert.match(noKek.err, /AEGIS_KEK/)

  const rotated = await run(keysCommand, config, ['rotate'])
  assert.equal(rotated.code, 0, rotated.err)
  assert.match(rotated.out, /next key \S+ published; it starts signing at \d{4}-/)
  const list = await run(keysCommand, config, ['list'])
  assert.match(list.out, /^KID\s+STATE/)
  assert.match(list.out, /\bcurrent\b/)
  assert.match(list.out, /\bnext\b/)

  const em = await run(keysCommand, config, ['rotate', '--emergency'])
  assert.equal(em.code, 0, em.err)
  const m = /emergency rotation: (\S+) signs now; (\S+) revoked/.exec(em.out)
  assert.ok(m, em.out)
  const json = JSON.parse((await run(keysCommand, config, ['list', '--json'])).out) as { keys: Array<{ kid: string; state: string; revoked: boolean }> }
  assert.deepEqual(json.keys.find((k) => k.kid === m[2])?.revoked, true)
  assert.equal(json.keys.find((k) => k.kid === m[1])?.state, 'current')
  assert.ok(!JSON.stringify(json).includes('"d"') && !JSON.stringify(json).includes('ncrypted'))

  const store = await openStore(config, logger)
  try {
    assert.deepEqual(
      (await store.revocations.listActive(Date.now())).map((r) => [r.type, r.value]),
      [['kid', m[2]]],
    )
    const types = (await store.audit.query({ limit: 100 })).map((e) => e.type)
    assert.ok(types.includes('key.rotated') && types.includes('key.revoked') && types.includes('token.revoked'), types.join(','))
  } finally {
    await store.close()
  }
  // The CLI's own audit chains verify.
  assert.equal((await run(auditCommand, config, ['verify'])).code, 0)
})

test('aegis audit has --help and clear usage errors', async (t) => {
  const config = testConfig()
  t.after(() => rmSync(config.dataDir, { recursive: true, force: true }))
  const help = await run(auditCommand, config, ['--help'])
  assert.equal(help.code, 0)
  assert.match(help.out, /aegis audit verify/)
  for (const argv of [[], ['nope'], ['verify', 'extra'], ['verify-export'], ['verify', '--out', 'x'], ['export', '--jwks', 'x']]) {
    const r = await run(auditCommand, config, argv)
    assert.equal(r.code, 2, argv.join(' '))
    assert.match(r.err, /aegis audit: /)
  }
  const missing = await run(auditCommand, config, ['verify-export', '/nonexistent/file.jsonl'])
  assert.equal(missing.code, 1)
  assert.match(missing.err, /ENOENT|no such file/)
  // An empty store is whole.
  const ok = await run(auditCommand, config, ['verify'])
  assert.equal(ok.code, 0)
  assert.match(ok.out, /whole: 0 events/)
})
