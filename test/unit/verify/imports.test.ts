import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'

// aegis/verify is embedded by tool servers: it must not pull in server code at run time.
const ALLOWED = [/^node:/, /^jose$/, /^lru-cache$/, /^\.\/[a-z0-9-]+\.js$/, /^\.\.\/lib\/[a-z-]+\.js$/]

test('aegis/verify imports only node built-ins, jose, lru-cache, its own files, lib/ and (optionally) sodium-native at run time', () => {
  const dir = join(process.cwd(), 'src', 'verify')
  const files = readdirSync(dir).filter((f) => f.endsWith('.ts'))
  assert.ok(files.includes('index.ts'))
  const seen: string[] = []
  for (const f of files) {
    const src = readFileSync(join(dir, f), 'utf8')
    for (const m of src.matchAll(/^\s*(import|export)\s+(type\s+)?[^'"]*?from\s+'([^']+)'/gm)) {
      const [, , typeOnly, spec] = m as unknown as [string, string, string | undefined, string]
      seen.push(spec)
      if (typeOnly) continue
      assert.ok(
        ALLOWED.some((re) => re.test(spec)),
        `${f} imports ${spec} at run time`,
      )
    }
    assert.doesNotMatch(src, /\bimport\(/, `${f} uses a dynamic import`)
    assert.doesNotMatch(src, /\brequire\(/, `${f} uses require`)
    // One optional native module, loaded with a fallback: libsodium for Ed25519.
    for (const m of src.matchAll(/createRequire\([^)]*\)\('([^']+)'\)/g)) assert.equal(m[1], 'sodium-native', `${f} loads ${m[1]}`)
    if (f !== 'ed25519.ts') assert.doesNotMatch(src, /createRequire/, `${f} loads modules at run time`)
  }
  assert.ok(seen.includes('lru-cache'), 'the scan found the imports')
})

test('the lib/ helpers aegis/verify uses import nothing outside node built-ins', () => {
  for (const f of ['clock.ts', 'json-limits.ts']) {
    const src = readFileSync(join(process.cwd(), 'src', 'lib', f), 'utf8')
    for (const m of src.matchAll(/from\s+'([^']+)'/g)) assert.match(m[1] as string, /^node:/, `lib/${f} imports ${m[1]}`)
  }
})
