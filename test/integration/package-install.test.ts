/**
 * The package as another project gets it: `npm pack` of this repository
 * (dist/ as `npm run build` left it), installed into a fresh project with
 * `npm install <tarball>`, then every subpath of package.json "exports"
 * imported by node from that project, and the `aegis` command run.
 * Dependencies come from npm's cache when it has them (`npm ci` filled it).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

const run = promisify(execFile)
const ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '../..')
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { name: string; exports: Record<string, { default: string }> }

test('npm pack, npm install <tarball> into another project, import every export subpath', { timeout: 300_000 }, async () => {
  for (const [sub, target] of Object.entries(pkg.exports)) {
    assert.ok(existsSync(join(ROOT, target.default)), `${sub} names ${target.default}, which must exist (npm run build)`)
  }
  const dir = mkdtempSync(join(tmpdir(), 'aegis-pack-'))
  try {
    await run('npm', ['pack', '--ignore-scripts', '--silent', '--pack-destination', dir], { cwd: ROOT })
    const tarball = readdirSync(dir).find((f) => f.endsWith('.tgz'))
    assert.ok(tarball, 'npm pack wrote a tarball')
    const project = join(dir, 'project')
    mkdirSync(project)
    writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'uses-aegis', version: '1.0.0', private: true, type: 'module' }))
    await run('npm', ['install', join(dir, tarball), '--prefer-offline', '--ignore-scripts', '--no-audit', '--no-fund', '--loglevel=error'], {
      cwd: project,
      maxBuffer: 16 * 1024 * 1024,
    })

    const expected: Record<string, string[]> = {
      '.': ['AegisClient', 'createVerifier'],
      './sdk': ['AegisClient', 'ClientCredentialsSource'],
      './verify': ['createVerifier', 'nodeHttpAegis', 'VerifyError'],
    }
    for (const sub of Object.keys(pkg.exports)) {
      const specifier = sub === '.' ? pkg.name : `${pkg.name}/${sub.slice(2)}`
      const script = `const m = await import(${JSON.stringify(specifier)}); process.stdout.write(JSON.stringify(Object.keys(m)))`
      const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { cwd: project })
      const names = JSON.parse(stdout) as string[]
      for (const name of expected[sub] ?? []) assert.ok(names.includes(name), `${specifier} exports ${name}: ${stdout}`)
    }
    // The command comes with the package too.
    const help = await run(join(project, 'node_modules', '.bin', 'aegis'), ['help', 'token'], { cwd: project })
    assert.match(help.stdout, /aegis token mint/)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})
