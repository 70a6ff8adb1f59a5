/**
 * The `aegis` command run from source (what bin/aegis.js runs from dist/),
 * for tests that start real `aegis` processes:
 * `node --import tsx test/helpers/aegis-cli.ts serve --role gateway`.
 */
import { main } from '../../src/cli/main.js'

process.exitCode = await main(process.argv.slice(2))
