#!/usr/bin/env node
// The package is built at install time (`prepare`), so `npx aegis` runs compiled code.
import { main } from '../dist/src/cli/main.js'

main(process.argv.slice(2)).then(
  (code) => {
    if (typeof code === 'number') process.exitCode = code
  },
  (err) => {
    console.error(`aegis: ${err instanceof Error ? err.message : String(err)}`)
    process.exitCode = 1
  },
)
