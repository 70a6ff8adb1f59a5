#!/usr/bin/env node
// Runs every test file under test/ with node's test runner, TypeScript loaded
// by tsx. Node 20's --test takes no glob, so the files are listed here.
import { readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { spawn } from 'node:child_process'

function find(dir) {
  const out = []
  for (const name of readdirSync(dir)) {
    const p = join(dir, name)
    if (statSync(p).isDirectory()) out.push(...find(p))
    else if (name.endsWith('.test.ts')) out.push(p)
  }
  return out
}

const filters = process.argv.slice(2)
let files = find('test').sort()
if (filters.length > 0) files = files.filter((f) => filters.some((x) => f.includes(x)))
if (files.length === 0) {
  console.error('no test files matched')
  process.exit(1)
}
function run(list) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=2', '--test-timeout=120000', ...list], {
      stdio: ['inherit', 'pipe', 'inherit'],
    })
    let out = ''
    child.stdout.on('data', (chunk) => {
      process.stdout.write(chunk)
      out += chunk
    })
    child.on('close', (code) => resolve({ code: code ?? 1, out }))
  })
}

// Test files whose process died of a V8 fatal error ("Fatal error in , line 0 /
// unreachable code" from the deoptimizer, seen intermittently on Node 20 and
// reported upstream, nodejs/node#51555, #57556) rather than of a failed test.
function v8Crashes(out) {
  if (!out.includes('V8_Fatal')) return null
  const failed = [...out.matchAll(/^not ok \d+ - (\S+\.test\.ts)\n {2}---\n([\s\S]*?)\n {2}\.\.\./gm)]
  if (failed.length === 0) return null
  // Only when every failed file was killed by a signal: any real test failure fails the run as it is.
  if (!failed.every(([, , yaml]) => /signal: 'SIG(TRAP|ABRT|ILL)'/.test(yaml))) return null
  return failed.map(([, file]) => file)
}

const first = await run(files)
let status = first.code
const crashed = status !== 0 ? v8Crashes(first.out) : null
if (crashed !== null) {
  // Once, loudly: a V8 crash says nothing about the code under test, and the rerun must pass on its own.
  console.error(`\nrun-tests: V8 crashed (not a test failure) in ${crashed.join(', ')}; running ${crashed.length === 1 ? 'it' : 'them'} once more`)
  status = (await run(crashed)).code
}
process.exit(status)
