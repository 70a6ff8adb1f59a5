/**
 * A second, TLS listener for an already-built fastify app (docs/reference.md:
 * with tls.cert/tls.key the control plane and gateway ALSO listen with TLS).
 * Client certificates are requested but not enforced by the handshake
 * (`rejectUnauthorized: false`): the app decides per request and answers
 * OAuth errors (RFC 8705 §2), which a failed handshake could not.
 */
import { readFileSync, statSync } from 'node:fs'
import { createServer, type Server } from 'node:https'
import type { FastifyInstance } from 'fastify'

export interface TlsListenerOptions {
  host: string
  port: number
  /** PEM text or file path of the server certificate (chain). */
  cert: string
  /** PEM text or file path of the server key. */
  key: string
  /** PEM text or file path of CAs named to clients in the CertificateRequest. */
  clientCa?: string | undefined
  /**
   * When set, the certificate, key and client CA files are looked at every
   * this many ms and the listener takes them up when they change (new
   * connections only; a half-written update is retried at the next look).
   */
  reloadMs?: number | undefined
}

/** A running TLS listener. */
export interface TlsListener {
  server: Server
  /** `https://host:port` actually bound. */
  url: string
  /** The port actually bound (the OS's choice when 0 was asked for). */
  port: number
  close(): Promise<void>
}

/** A TLS listener bound before its app exists; requests are answered 503 until `serve`. */
export interface BoundTlsListener extends TlsListener {
  /** Hands every request to `app` from now on (which must be ready or becomes ready here). */
  serve(app: FastifyInstance): Promise<void>
}

function pem(v: string): string {
  return v.includes('-----BEGIN') ? v : readFileSync(v, 'utf8')
}

/** Listens with TLS, handing every request to `app` (which must be ready or becomes ready here). */
export async function listenTls(app: FastifyInstance, opts: TlsListenerOptions): Promise<TlsListener> {
  await app.ready()
  const l = await bindTls(opts)
  await l.serve(app)
  return l
}

/**
 * Binds the TLS listener without an app yet: with port 0, the port the OS
 * chose is known before the app is built from a configuration that must name
 * it (the control plane's mTLS endpoint aliases).
 */
export async function bindTls(opts: TlsListenerOptions): Promise<BoundTlsListener> {
  let route: FastifyInstance['routing'] | null = null
  const context = () => ({ cert: pem(opts.cert), key: pem(opts.key), ...(opts.clientCa ? { ca: pem(opts.clientCa) } : {}) })
  const server = createServer(
    {
      ...context(),
      requestCert: true,
      rejectUnauthorized: false,
      minVersion: 'TLSv1.2',
    },
    (req, res) => {
      if (route !== null) return route(req, res)
      res.writeHead(503, { 'retry-after': '1', 'cache-control': 'no-store' }).end()
    },
  )
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  const addr = server.address()
  const port = typeof addr === 'object' && addr ? addr.port : opts.port
  const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host
  let closing: Promise<void> | null = null
  const files = [opts.cert, opts.key, opts.clientCa].filter((v): v is string => typeof v === 'string' && !v.includes('-----BEGIN'))
  const filesSignature = (): string =>
    files
      .map((f) => {
        try {
          const st = statSync(f)
          return `${st.size}:${st.mtimeMs}:${st.ino}`
        } catch {
          return 'missing'
        }
      })
      .join('|')
  let seen = filesSignature()
  const reloader =
    opts.reloadMs !== undefined && files.length > 0
      ? setInterval(() => {
          const now = filesSignature()
          if (now === seen) return
          try {
            server.setSecureContext(context())
            seen = now
          } catch {
            // Certificate and key not yet matching (one written, not the other): look again next time.
          }
        }, opts.reloadMs)
      : undefined
  reloader?.unref()
  return {
    server,
    url: `https://${host}:${port}`,
    port,
    async serve(app) {
      await app.ready()
      route = (req, res) => app.routing(req, res)
    },
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        if (reloader) clearInterval(reloader)
        server.close(() => resolve())
        server.closeIdleConnections()
      })),
  }
}
