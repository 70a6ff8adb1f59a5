/**
 * The README's examples are files that run in CI (examples/, see
 * test/integration/readme-walkthrough.test.ts): each block marked
 * `<!-- include: PATH -->` must equal that file. The README and docs/*.md link
 * only to files this repository holds, and nothing points outside it.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '../..')
const readme = readFileSync(join(ROOT, 'README.md'), 'utf8')

test('every README block marked <!-- include: PATH --> is that file, verbatim', () => {
  const includes = [...readme.matchAll(/<!-- include: (\S+) -->\n```\w*\n([\s\S]*?)```\n/g)]
  assert.ok(includes.length >= 2, 'the SDK and verifier examples are included')
  for (const [, path, block] of includes) {
    assert.ok(existsSync(join(ROOT, path!)), `${path} exists`)
    assert.equal(block, readFileSync(join(ROOT, path!), 'utf8'), `README block for ${path} differs from the file`)
  }
  // A marker whose block does not follow at once would escape the check.
  assert.equal(includes.length, [...readme.matchAll(/<!-- include: /g)].length)
})

function markdownFiles(): string[] {
  const docs = readdirSync(join(ROOT, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f) => join('docs', f))
  return ['README.md', 'CONTRIBUTING.md', ...docs]
}

test('README.md, CONTRIBUTING.md and docs/*.md link only to files in the repository', () => {
  const broken: string[] = []
  for (const file of markdownFiles()) {
    const text = readFileSync(join(ROOT, file), 'utf8')
    for (const m of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      const target = m[1]!
      if (/^[a-z][a-z0-9+.-]*:/i.test(target) || target.startsWith('#')) continue
      const path = resolve(ROOT, dirname(file), decodeURIComponent(target.split('#')[0]!))
      const inside = !relative(ROOT, path).startsWith('..')
      if (!inside || !existsSync(path)) broken.push(`${file}: ${target}`)
    }
  }
  assert.deepEqual(broken, [])
})

test('no file in the repository points at the shared folder beside the clone (a clone does not have it)', () => {
  const needle = ['..', 'shared'].join('/')
  const hits: string[] = []
  const walk = (dir: string): void => {
    for (const name of readdirSync(join(ROOT, dir))) {
      if (['node_modules', 'dist', '.git', 'test-output', '.aegis'].includes(name) || name.startsWith('.')) continue
      const rel = join(dir, name)
      const st = statSync(join(ROOT, rel))
      if (st.isDirectory()) walk(rel)
      else if (
        st.size < 2_000_000 &&
        /\.(md|ts|mjs|js|json|sh|py|cedar|cedarschema|html|css)$/.test(name) &&
        readFileSync(join(ROOT, rel), 'utf8').includes(needle)
      )
        hits.push(rel)
    }
  }
  walk('.')
  assert.deepEqual(hits, [])
})
