import type { FastifyInstance } from 'fastify'
import type { AegisConfig } from '../config/schema.js'
import { buildControlPlane } from '../control-plane/index.js'
import { buildGateway } from '../gateway/index.js'
import type { ControlPlaneDeps } from '../control-plane/deps.js'
import { listenTls } from '../http/tls-listener.js'
import { initTracing, shutdownTracing } from '../observability/tracing.js'

export type Role = 'control-plane' | 'gateway' | 'all'

export interface RunningRoles {
  controlPlane?: { app: FastifyInstance; deps: ControlPlaneDeps; url: string; tlsUrl?: string }
  gateway?: { app: FastifyInstance; url: string; tlsUrl?: string }
  /** Stops accepting, drains in-flight requests, flushes the audit log, closes stores. */
  close(): Promise<void>
}

function urlOf(app: FastifyInstance): string {
  const addr = app.server.address()
  if (addr && typeof addr === 'object') return `http://${addr.family === 'IPv6' ? `[${addr.address}]` : addr.address}:${addr.port}`
  return String(addr)
}

/**
 * With tls.cert/tls.key and a TLS port, the role ALSO listens with TLS,
 * requesting client certificates (RFC 8705). Closed before the role's app
 * (closers run in reverse), so TLS connections drain first.
 */
async function alsoTls(config: AegisConfig, app: FastifyInstance, host: string, port: number | undefined, closers: Array<() => Promise<void>>): Promise<string | undefined> {
  if (port === undefined || !config.tls.cert || !config.tls.key) return undefined
  const l = await listenTls(app, { host, port, cert: config.tls.cert, key: config.tls.key, clientCa: config.tls.clientCa })
  closers.push(() => l.close())
  return l.url
}

/**
 * Builds and starts the roles. The control plane starts first so an `all`
 * process's gateway finds its JWKS and feed at once.
 */
export async function startRoles(config: AegisConfig, role: Role): Promise<RunningRoles> {
  // Installs the W3C propagator (incoming traceparent is continued) and, only
  // when OTEL_EXPORTER_OTLP_ENDPOINT is set, the OTLP exporter.
  initTracing({ serviceName: role === 'gateway' ? 'aegis-gateway' : 'aegis' })
  const closers: Array<() => Promise<void>> = [() => shutdownTracing()]
  const running: RunningRoles = {
    close: async () => {
      for (const close of closers.reverse()) await close().catch(() => {})
    },
  }
  try {
    if (role === 'control-plane' || role === 'all') {
      const cp = await buildControlPlane(config)
      closers.push(() => cp.close())
      await cp.app.listen({ host: config.control.host, port: config.control.port })
      running.controlPlane = { app: cp.app, deps: cp.deps, url: urlOf(cp.app) }
      const tlsUrl = await alsoTls(config, cp.app, config.control.host, config.control.tlsPort, closers)
      if (tlsUrl) running.controlPlane.tlsUrl = tlsUrl
    }
    if (role === 'gateway' || role === 'all') {
      const gw = await buildGateway(config)
      closers.push(() => gw.close())
      await gw.app.listen({ host: config.gateway.host, port: config.gateway.port })
      running.gateway = { app: gw.app, url: urlOf(gw.app) }
      const tlsUrl = await alsoTls(config, gw.app, config.gateway.host, config.gateway.tlsPort, closers)
      if (tlsUrl) running.gateway.tlsUrl = tlsUrl
    }
  } catch (err) {
    await running.close()
    throw err
  }
  return running
}

/** Resolves when SIGINT or SIGTERM arrives, after a clean shutdown. */
export function closeOnSignal(running: RunningRoles, log: (line: string) => void): Promise<void> {
  return new Promise((resolve) => {
    let closing = false
    const onSignal = (signal: NodeJS.Signals): void => {
      if (closing) return
      closing = true
      log(`aegis: ${signal} received, draining…`)
      running.close().then(() => {
        log('aegis: stopped cleanly')
        resolve()
      }, (err: unknown) => {
        log(`aegis: shutdown error: ${err instanceof Error ? err.message : String(err)}`)
        resolve()
      })
    }
    process.once('SIGINT', onSignal)
    process.once('SIGTERM', onSignal)
  })
}
