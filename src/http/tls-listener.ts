/**
 * A second, TLS listener for an already-built fastify app (DESIGN.md:
 * with tls.cert/tls.key the control plane and gateway ALSO listen with TLS).
 * Client certificates are requested but not enforced by the handshake
 * (`rejectUnauthorized: false`): the app decides per request and answers
 * OAuth errors (RFC 8705 §2), which a failed handshake could not.
 */
import { readFileSync } from 'node:fs'
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
}

/** A running TLS listener. */
export interface TlsListener {
  server: Server
  /** `https://host:port` actually bound. */
  url: string
  close(): Promise<void>
}

function pem(v: string): string {
  return v.includes('-----BEGIN') ? v : readFileSync(v, 'utf8')
}

/** Listens with TLS, handing every request to `app` (which must be ready or becomes ready here). */
export async function listenTls(app: FastifyInstance, opts: TlsListenerOptions): Promise<TlsListener> {
  await app.ready()
  const server = createServer({
    cert: pem(opts.cert),
    key: pem(opts.key),
    ...(opts.clientCa ? { ca: pem(opts.clientCa) } : {}),
    requestCert: true,
    rejectUnauthorized: false,
    minVersion: 'TLSv1.2',
  }, (req, res) => app.routing(req, res))
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
  return {
    server,
    url: `https://${host}:${port}`,
    close: () => (closing ??= new Promise<void>((resolve) => {
      server.close(() => resolve())
      server.closeIdleConnections()
    })),
  }
}
