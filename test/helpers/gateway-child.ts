/**
 * Runs one gateway in its own process for multi-process tests:
 * `node --import tsx test/helpers/gateway-child.ts`, configured by the JSON
 * in GATEWAY_CHILD (`{config: overrides, tuning}`). Prints
 * `READY <url> <gateway_id>` once listening and ready; exits on SIGTERM.
 */
import { loadConfig } from '../../src/config/load.js'
import { buildGateway } from '../../src/gateway/index.js'
import { silentLogger } from '../../src/observability/logger.js'

const spec = JSON.parse(process.env.GATEWAY_CHILD ?? '{}') as { config: Record<string, unknown>; tuning?: Record<string, unknown> }
const config = loadConfig({ env: {}, overrides: spec.config })
const gw = await buildGateway(config, { logger: silentLogger(), ...(spec.tuning ? { tuning: spec.tuning } : {}) })
await gw.app.listen({ port: 0, host: '127.0.0.1' })
await gw.ready
const port = (gw.app.server.address() as { port: number }).port
process.stdout.write(`READY http://127.0.0.1:${port} ${gw.deps.gatewayId}\n`)
const stop = (): void => {
  gw.close().then(
    () => process.exit(0),
    () => process.exit(1),
  )
}
process.once('SIGTERM', stop)
process.once('SIGINT', stop)
