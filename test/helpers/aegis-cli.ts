/**
 * The `aegis` command run from source (what bin/aegis.js runs from dist/),
 * for tests that start real `aegis` processes:
 * `node --import tsx test/helpers/aegis-cli.ts serve --role gateway`.
 * With TEST_EXIT_WITH_PARENT=1 the process ends when its standard input
 * closes, that is when the test process that holds the other end is gone,
 * however it went (a runner's timeout, SIGKILL): no server outlives its test.
 */
import { main } from '../../src/cli/main.js'

if (process.env.TEST_EXIT_WITH_PARENT === '1') {
  process.stdin.on('close', () => process.kill(process.pid, 'SIGKILL'))
  process.stdin.resume()
  // The open stdin must not keep a finished command alive.
  process.stdin.unref?.()
}

process.exitCode = await main(process.argv.slice(2))
