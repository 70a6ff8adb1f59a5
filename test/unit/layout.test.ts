/**
 * The README's layout section and CONTRIBUTING.md against the tree: every
 * source folder is listed and every listed folder exists; roles import one
 * another only through their index.ts; the paths and npm scripts
 * CONTRIBUTING.md names exist.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { dirname, join, normalize, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '../..')
const read = (path: string): string => readFileSync(join(root, path), 'utf8')
const tracked = execFileSync('git', ['ls-files', '--cached', '--others', '--exclude-standard'], { cwd: root, encoding: 'utf8' })
  .split('\n')
  .filter((f) => f !== '' && existsSync(join(root, f)))

/** The folders the README's layout block lists (first column). */
function listedFolders(): string[] {
  const readme = read('README.md')
  const section = readme.slice(readme.indexOf('\n## Layout\n'))
  const block = section.slice(section.indexOf('```\n') + 4, section.indexOf('\n```', section.indexOf('```\n') + 4))
  return block
    .split('\n')
    .map((line) => line.split(/\s+/)[0]!)
    .filter((x) => x.endsWith('/'))
}

test('the README layout lists every source folder and top-level folder, and nothing that does not exist', () => {
  const listed = listedFolders()
  assert.ok(listed.length > 20, `layout block found (${listed.length} entries)`)
  const srcFolders = new Set(tracked.filter((f) => f.startsWith('src/')).map((f) => `${dirname(f)}/`))
  const topFolders = new Set(tracked.filter((f) => f.includes('/') && !f.startsWith('.')).map((f) => `${f.split('/')[0]}/`))
  topFolders.delete('src/')
  for (const folder of [...srcFolders, ...topFolders]) {
    const covered = listed.includes(folder) || (!folder.startsWith('src/') && listed.some((l) => folder.startsWith(l) || l.startsWith(folder)))
    assert.ok(covered, `README layout omits ${folder}`)
  }
  for (const folder of listed) assert.ok(existsSync(join(root, folder)), `README layout lists ${folder}, which does not exist`)
})

const ROLES = ['control-plane', 'gateway', 'sdk', 'verify']

test('roles import one another only through their index.ts', () => {
  const crossings: string[] = []
  for (const file of tracked.filter((f) => f.startsWith('src/') && f.endsWith('.ts'))) {
    const fromRole = file.split('/')[1]
    for (const m of read(file).matchAll(/(?:from|import)\s*\(?\s*'(\.{1,2}\/[^']+)'/g)) {
      const target = normalize(join(dirname(file), m[1]!))
      const parts = relative('src', target).split('/')
      const role = parts[0]!
      if (!ROLES.includes(role) || role === fromRole) continue
      if (parts.slice(1).join('/') !== 'index.js') crossings.push(`${file} imports ${m[1]}`)
    }
  }
  assert.deepEqual(crossings, [], 'import another role through its index.ts')
})

test('CONTRIBUTING.md names paths that exist and npm scripts that are defined', () => {
  const text = read('CONTRIBUTING.md')
  const scripts = Object.keys((JSON.parse(read('package.json')) as { scripts: Record<string, string> }).scripts)
  const named = [...text.matchAll(/npm run ([a-z][\w:-]*)/g)].map((m) => m[1]!)
  assert.ok(named.length > 0)
  for (const script of named) assert.ok(scripts.includes(script), `CONTRIBUTING.md runs npm run ${script}, which package.json does not define`)
  const paths = [...text.matchAll(/`((?:src|test|bench|scripts|docs|clients|console|examples|policies|\.ci)\/[\w./*-]*)`/g)].map((m) => m[1]!)
  assert.ok(paths.length > 5, `CONTRIBUTING.md names paths (${paths.length})`)
  for (const path of paths) {
    const concrete = path.replace(/\/?\*.*$/, '')
    assert.ok(existsSync(join(root, concrete)), `CONTRIBUTING.md names ${path}, which does not exist`)
  }
  for (const link of [...text.matchAll(/\]\(([^)#]+)(?:#[^)]*)?\)/g)].map((m) => m[1]!)) {
    if (/^https?:/.test(link)) continue
    assert.ok(existsSync(join(root, link)), `CONTRIBUTING.md links ${link}, which is not in the repository`)
  }
})

test('code and docs cite the repository own reference (docs/reference.md), never a design file outside it', () => {
  const outside = ['DESIGN', 'md'].join('.')
  const citing = tracked.filter((f) => /\.(ts|js|mjs|py|md|cedar|sh)$/.test(f) && read(f).includes(outside))
  assert.deepEqual(citing, [], `cite docs/reference.md instead of ${outside}`)
})
