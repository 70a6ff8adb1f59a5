/**
 * No line of code is longer than the formatter's lineWidth (biome.jsonc).
 * Biome wraps what it can but leaves long string literals and comments
 * alone, and it does not look at the Python client at all: this keeps
 * every tracked .ts, .js, .mjs and .py file within the width.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '../..')

/** biome.jsonc as JSON: comments dropped, strings (which may hold `//`) kept as they are. */
function biomeConfig(): { formatter?: { lineWidth?: number } } {
  const text = readFileSync(join(root, 'biome.jsonc'), 'utf8')
  return JSON.parse(text.replace(/("(?:[^"\\\n]|\\.)*")|\/\/[^\n]*|\/\*[\s\S]*?\*\//g, (_m, str: string | undefined) => str ?? ''))
}

test("no tracked .ts, .js, .mjs or .py line is longer than biome.jsonc's lineWidth", () => {
  const width = biomeConfig().formatter?.lineWidth
  assert.ok(typeof width === 'number' && width > 0, `biome.jsonc formatter.lineWidth read (${width})`)
  const files = execFileSync('git', ['ls-files', '-z', '--', '*.ts', '*.js', '*.mjs', '*.py'], { cwd: root, encoding: 'utf8' })
    .split('\0')
    .filter((f) => f !== '' && existsSync(join(root, f)))
  assert.ok(files.length > 100, `tracked source files found (${files.length})`)
  const long: string[] = []
  for (const file of files) {
    const lines = readFileSync(join(root, file), 'utf8').split('\n')
    lines.forEach((line, i) => {
      // Characters as an editor counts them: code points, a trailing CR not included.
      const length = [...line.replace(/\r$/, '')].length
      if (length > width) long.push(`${file}:${i + 1}: ${length} characters`)
    })
  }
  assert.deepEqual(long, [], `lines longer than ${width} characters:\n${long.join('\n')}`)
})
