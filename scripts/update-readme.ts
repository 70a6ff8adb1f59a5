// Rewrites the generated parts of README.md: the configuration table (from
// src/config/schema.ts) and, when bench/results.md exists, the benchmark table.
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { execFileSync } from 'node:child_process'

function replaceBetween(text: string, name: string, body: string): string {
  const start = `<!-- ${name}:start -->`
  const end = `<!-- ${name}:end -->`
  const i = text.indexOf(start)
  const j = text.indexOf(end)
  if (i < 0 || j < i) throw new Error(`README.md has no ${name} markers`)
  return `${text.slice(0, i + start.length)}\n${body.trim()}\n${text.slice(j)}`
}

let readme = readFileSync('README.md', 'utf8')
const table = execFileSync(process.execPath, ['--import', 'tsx', 'scripts/config-table.ts'], { encoding: 'utf8' })
readme = replaceBetween(readme, 'config-table', table)
if (existsSync('bench/results.md')) readme = replaceBetween(readme, 'bench', readFileSync('bench/results.md', 'utf8'))
writeFileSync('README.md', readme)
console.log('README.md updated')
