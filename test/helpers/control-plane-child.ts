/**
 * Runs one control plane in its own process for multi-process tests:
 * `node --import tsx test/helpers/control-plane-child.ts`, configured by the
 * JSON in CONTROL_PLANE_CHILD (`{config: overrides, port?, redisPrefix?}`).
 * With `redisPrefix`, its feed goes on Redis under that prefix (tests sharing
 * one Redis never hear each other). Prints `READY <url>` once listening;
 * exits on SIGTERM after a draining close.
 */
import { loadConfig } from '../../src/config/load.js'
import { buildControlPlane } from '../../src/control-plane/index.js'
import { RedisFeedPublisher } from '../../src/control-plane/feed/index.js'
import { createLogger } from '../../src/observability/logger.js'

const spec = JSON.parse(process.env.CONTROL_PLANE_CHILD ?? '{}') as { config: Record<string, unknown>; port?: number; redisPrefix?: string }
const config = loadConfig({ env: {}, overrides: spec.config })
const logger = createLogger(config.logLevel, 'aegis-control-plane')
const feed = spec.redisPrefix && config.redisUrl ? await RedisFeedPublisher.open({ url: config.redisUrl, logger, prefix: spec.redisPrefix }) : undefined
const cp = await buildControlPlane(config, { logger, ...(feed ? { feed } : {}) })
await cp.app.listen({ port: spec.port ?? 0, host: '127.0.0.1' })
const port = (cp.app.server.address() as { port: number }).port
process.stdout.write(`READY http://127.0.0.1:${port}\n`)
const stop = (): void => {
  cp.close()
    .then(() => feed?.close())
    .then(
      () => process.exit(0),
      () => process.exit(1),
    )
}
process.once('SIGTERM', stop)
process.once('SIGINT', stop)
