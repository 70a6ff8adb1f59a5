import type { FastifyInstance } from 'fastify'
import { CONFIG_KEYS, envName, type AegisConfig } from '../config/schema.js'
import type { ControlPlaneDeps } from '../control-plane/index.js'
import type { GatewayOverrides } from '../gateway/index.js'
import { bindTls, listenTls, type TlsListener, type TlsListenerOptions } from '../http/tls-listener.js'
import { initTracing, shutdownTracing } from '../observability/tracing.js'

export type Role = 'control-plane' | 'gateway' | 'all'

/** Where a role listens: URLs and ports as bound (the OS's choice where the config says 0). */
export interface RoleAddresses {
  url: string
  port: number
  tlsUrl?: string
  tlsPort?: number
}

export interface RunningRoles {
  controlPlane?: RoleAddresses & { app: FastifyInstance; deps: ControlPlaneDeps }
  gateway?: RoleAddresses & { app: FastifyInstance }
  /** Stops accepting, drains in-flight requests, flushes the audit log, closes stores. */
  close(): Promise<void>
}

function boundPort(app: FastifyInstance): number {
  const addr = app.server.address()
  return addr && typeof addr === 'object' ? addr.port : 0
}

/**
 * The bound URL; `fromHere` gives the URL the same process reaches it at
 * (loopback for a wildcard address), which is what an `all` process's
 * gateway follows.
 */
function urlOf(app: FastifyInstance, fromHere = false): string {
  const addr = app.server.address()
  if (!addr || typeof addr !== 'object') return String(addr)
  let host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address
  if (fromHere && addr.address === '0.0.0.0') host = '127.0.0.1'
  if (fromHere && addr.address === '::') host = '[::1]'
  return `http://${host}:${addr.port}`
}

function tlsOptions(config: AegisConfig, host: string, port: number | undefined): TlsListenerOptions | undefined {
  if (port === undefined || !config.tls.cert || !config.tls.key) return undefined
  // Certificate, key and client CA files are taken up when they change (tls.fileCheckSeconds, at least every second).
  return { host, port, cert: config.tls.cert, key: config.tls.key, clientCa: config.tls.clientCa, reloadMs: Math.max(1, config.tls.fileCheckSeconds) * 1000 }
}

/** The configuration key behind a listener, for error messages. */
type PortKey = 'control.port' | 'control.tlsPort' | 'gateway.port' | 'gateway.tlsPort'

/**
 * Runs `bind`; a port that is taken (EADDRINUSE) or not ours to take
 * (EACCES) becomes an error naming the setting to change.
 */
async function bindingPort<T>(key: PortKey, host: string, port: number, bind: () => Promise<T>): Promise<T> {
  try {
    return await bind()
  } catch (err) {
    const code = (err as { code?: unknown }).code
    if (code !== 'EADDRINUSE' && code !== 'EACCES' && code !== 'EADDRNOTAVAIL') throw err
    const spec = CONFIG_KEYS.find((k) => k.path === key)!
    const why = code === 'EADDRINUSE' ? 'is already in use' : code === 'EACCES' ? 'may not be bound by this user' : 'is not an address of this machine'
    throw new Error(
      `${host}:${port} ${why} (${code}): set ${envName(spec)} (${key}) to a free ` +
        `port${code === 'EADDRNOTAVAIL' ? ` or ${key.split('.')[0]}.host to a local address` : ''}`,
      { cause: err },
    )
  }
}

/**
 * With tls.cert/tls.key and a TLS port, the role ALSO listens with TLS,
 * requesting client certificates (RFC 8705). Closed before the role's app
 * (closers run in reverse), so TLS connections drain first.
 */
async function alsoTls(
  key: PortKey,
  opts: TlsListenerOptions | undefined,
  app: FastifyInstance,
  closers: Array<() => Promise<void>>,
): Promise<TlsListener | undefined> {
  if (opts === undefined) return undefined
  const l = await bindingPort(key, opts.host, opts.port, () => listenTls(app, opts))
  closers.push(() => l.close())
  return l
}

function withTls<T extends RoleAddresses>(role: T, l: TlsListener | undefined): T {
  if (l !== undefined) {
    role.tlsUrl = l.url
    role.tlsPort = l.port
  }
  return role
}

/**
 * Builds and starts the roles. The control plane starts first so an `all`
 * process's gateway finds its JWKS and feed at once.
 */
export async function startRoles(config: AegisConfig, role: Role, overrides: { gateway?: GatewayOverrides } = {}): Promise<RunningRoles> {
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
      const tlsOpts = tlsOptions(config, config.control.host, config.control.tlsPort)
      // The metadata's mTLS aliases and the token endpoint URLs (private_key_jwt
      // audience, DPoP htu) name the TLS port, so with port 0 the listener is
      // bound first and the control plane built with the port the OS chose.
      const early = tlsOpts?.port === 0 ? await bindingPort('control.tlsPort', tlsOpts.host, 0, () => bindTls(tlsOpts)) : undefined
      let cpConfig = config
      if (early !== undefined) cpConfig = Object.freeze({ ...config, control: Object.freeze({ ...config.control, tlsPort: early.port }) })
      // Each role's modules are imported only by a process that runs it: a gateway starts without the stores and the token service.
      const { buildControlPlane } = await import('../control-plane/index.js')
      const cp = await buildControlPlane(cpConfig).catch(async (err: unknown) => {
        await early?.close()
        throw err
      })
      closers.push(() => cp.close())
      if (early !== undefined) closers.push(() => early.close())
      await bindingPort('control.port', config.control.host, config.control.port, () => cp.app.listen({ host: config.control.host, port: config.control.port }))
      if (early !== undefined) await early.serve(cp.app)
      const tls = early ?? (await alsoTls('control.tlsPort', tlsOpts, cp.app, closers))
      running.controlPlane = withTls({ app: cp.app, deps: cp.deps, url: urlOf(cp.app), port: boundPort(cp.app) }, tls)
    }
    if (role === 'gateway' || role === 'all') {
      let gwConfig = config
      // An `all` process's gateway follows its own control plane where it is
      // bound, not the issuer URL: that may name another instance, a proxy in
      // front, or (control.port 0) not the port the OS chose.
      if (role === 'all' && config.controlPlaneUrl === undefined) {
        gwConfig = Object.freeze({ ...config, controlPlaneUrl: urlOf(running.controlPlane!.app, true) })
      }
      const { buildGateway } = await import('../gateway/index.js')
      const gw = await buildGateway(gwConfig, overrides.gateway)
      closers.push(() => gw.close())
      await bindingPort('gateway.port', config.gateway.host, config.gateway.port, () => gw.app.listen({ host: config.gateway.host, port: config.gateway.port }))
      const tls = await alsoTls('gateway.tlsPort', tlsOptions(config, config.gateway.host, config.gateway.tlsPort), gw.app, closers)
      running.gateway = withTls({ app: gw.app, url: urlOf(gw.app), port: boundPort(gw.app) }, tls)
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
      running.close().then(
        () => {
          log('aegis: stopped cleanly')
          resolve()
        },
        (err: unknown) => {
          log(`aegis: shutdown error: ${err instanceof Error ? err.message : String(err)}`)
          resolve()
        },
      )
    }
    process.once('SIGINT', onSignal)
    process.once('SIGTERM', onSignal)
  })
}
