/**
 * A real control plane (embedded SQLite in a temp dir) listening on plain
 * HTTP and on TLS with client certificates requested, a test PKI, and
 * helpers for HTTPS calls with a chosen client certificate. Optionally a
 * gateway following it, also on both listeners.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { request as httpsRequest } from 'node:https'
import { request as httpRequest } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { loadConfig } from '../../../src/config/load.js'
import type { AegisConfig } from '../../../src/config/schema.js'
import { buildControlPlane, type ControlPlane } from '../../../src/control-plane/index.js'
import { buildGateway, type Gateway } from '../../../src/gateway/index.js'
import { listenTls, type TlsListener } from '../../../src/http/tls-listener.js'
import { silentLogger } from '../../../src/observability/logger.js'
import type { AuditEvent } from '../../../src/store/types.js'
import { onFreePorts } from '../../helpers/ports.js'
import { makeCa, makeLeaf, pkiDir, rmPki, type Ca, type Issued } from './pki.js'

export interface Reply {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: any
  text: string
}

export interface CallOptions {
  method?: string
  headers?: Record<string, string>
  body?: string
  /** Client certificate and key (PEM). */
  cert?: Issued
  /** Bind the client socket to this local address (loopback aliases such as 127.0.0.2). */
  localAddress?: string
}

export interface CredentialEnv {
  pki: { dir: string; ca: Ca; otherCa: Ca; server: Issued }
  cp: ControlPlane
  config: AegisConfig
  /** http://127.0.0.1:port (the issuer). */
  url: string
  /** https://127.0.0.1:tlsPort (the mTLS alias). */
  tlsUrl: string
  adminToken: string
  gatewayToken: string
  admin(method: string, path: string, body?: unknown, expect?: number[]): Promise<any>
  /** HTTP(S) call; `https:` URLs trust the test CA for the server. */
  call(url: string, o?: CallOptions): Promise<Reply>
  /** Form POST. */
  form(url: string, params: Record<string, string>, o?: CallOptions): Promise<Reply>
  events(type: string): Promise<AuditEvent[]>
  /** A gateway following this control plane on HTTP and TLS. */
  startGateway(overrides?: Record<string, unknown>): Promise<{ gw: Gateway; url: string; tlsUrl: string; close(): Promise<void> }>
  close(): Promise<void>
}

export interface EnvOptions {
  overrides?: Record<string, unknown>
  /** Extra tls.* settings (tenantClientCas, trustedProxies, clientCertHeader), possibly naming the generated PKI's files. */
  tls?: Record<string, unknown> | ((pki: { ca: Ca; otherCa: Ca }) => Record<string, unknown>)
}

export async function startCredentialEnv(opts: EnvOptions = {}): Promise<CredentialEnv> {
  const dir = pkiDir()
  const ca = makeCa(dir, 'Aegis Test Client CA')
  const otherCa = makeCa(dir, 'Some Other CA')
  const server = makeLeaf(ca, 'server', { subject: '/CN=127.0.0.1', san: ['IP:127.0.0.1', 'DNS:localhost'], server: true })
  const dataDir = mkdtempSync(join(tmpdir(), 'aegis-cred-'))
  const adminToken = `adm_${randomBytes(32).toString('base64url')}`
  const gatewayToken = `gw_${randomBytes(32).toString('base64url')}`
  const base = {
    dataDir,
    kek: randomBytes(32).toString('hex'),
    logLevel: 'silent',
    adminToken,
    gatewayToken,
    rateLimit: { perClient: 1_000_000, perIp: 10_000_000 },
    // Test issuers serve their JWKS over http on loopback.
    tokenExchange: { jwksAllowedNetworks: ['127.0.0.0/8'] },
    tls: {
      cert: server.certFile,
      key: server.keyFile,
      clientCa: ca.certFile,
      trustedProxies: [],
      ...(typeof opts.tls === 'function' ? opts.tls({ ca, otherCa }) : opts.tls),
    },
    ...opts.overrides,
  }
  const tlsOf = (port: number) => ({ host: '127.0.0.1', port, cert: server.certFile, key: server.keyFile, clientCa: ca.certFile })
  const { port, config, cp, listener } = await onFreePorts(2, async ([port = 0, tlsPort = 0]) => {
    const config = loadConfig({ env: {}, overrides: { ...base, issuer: `http://127.0.0.1:${port}`, control: { host: '127.0.0.1', port, tlsPort } } })
    const cp = await buildControlPlane(config)
    try {
      await cp.app.listen({ port, host: '127.0.0.1' })
      return { port, config, cp, listener: await listenTls(cp.app, tlsOf(tlsPort)) }
    } catch (err) {
      await cp.close()
      throw err
    }
  })
  const listeners: TlsListener[] = [listener]
  const url = `http://127.0.0.1:${port}`
  const gateways: Array<() => Promise<void>> = []

  const call = (target: string, o: CallOptions = {}): Promise<Reply> =>
    new Promise((resolve, reject) => {
      const u = new URL(target)
      const common = {
        method: o.method ?? 'GET',
        headers: { ...o.headers, ...(o.body !== undefined ? { 'content-length': String(Buffer.byteLength(o.body)) } : {}) },
        ...(o.localAddress ? { localAddress: o.localAddress } : {}),
        agent: false as const,
      }
      const onRes = (res: import('node:http').IncomingMessage): void => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8')
          let body: unknown
          try {
            body = text ? JSON.parse(text) : undefined
          } catch {
            body = undefined
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body, text })
        })
        res.on('error', reject)
      }
      const req =
        u.protocol === 'https:'
          ? httpsRequest(u, { ...common, ca: ca.certPem, ...(o.cert ? { cert: o.cert.certPem, key: o.cert.keyPem } : {}) }, onRes)
          : httpRequest(u, common, onRes)
      req.on('error', reject)
      if (o.body !== undefined) req.write(o.body)
      req.end()
    })

  const env: CredentialEnv = {
    pki: { dir, ca, otherCa, server },
    cp,
    config,
    url,
    tlsUrl: listeners[0]!.url,
    adminToken,
    gatewayToken,
    async admin(method, path, body, expect = [200, 201, 204]) {
      const r = await call(`${url}/admin/v1${path}`, {
        method,
        headers: { authorization: `Bearer ${adminToken}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      })
      if (!expect.includes(r.status)) throw new Error(`${method} ${path} answered ${r.status}: ${r.text}`)
      return r.body
    },
    call,
    form(target, params, o = {}) {
      return call(target, {
        ...o,
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', ...o.headers },
        body: new URLSearchParams(params).toString(),
      })
    },
    async events(type) {
      const w = cp.deps.audit as { flush?: () => Promise<void> }
      await w.flush?.()
      return cp.deps.store.audit.query({ type, limit: 500 })
    },
    async startGateway(overrides = {}) {
      const { gport, gw, l } = await onFreePorts(2, async ([gport = 0, gtls = 0]) => {
        const gconfig = loadConfig({
          env: {},
          overrides: { ...base, issuer: url, adminToken: undefined, gatewayToken, gateway: { host: '127.0.0.1', port: gport, tlsPort: gtls }, ...overrides },
        })
        const gw = await buildGateway(gconfig, { logger: silentLogger() })
        try {
          await gw.app.listen({ port: gport, host: '127.0.0.1' })
          return { gport, gw, l: await listenTls(gw.app, tlsOf(gtls)) }
        } catch (err) {
          await gw.close()
          throw err
        }
      })
      await gw.ready
      let closed = false
      const close = async (): Promise<void> => {
        if (closed) return
        closed = true
        await l.close()
        await gw.close()
      }
      gateways.push(close)
      return { gw, url: `http://127.0.0.1:${gport}`, tlsUrl: l.url, close }
    },
    async close() {
      for (const g of gateways) await g().catch(() => {})
      for (const l of listeners) await l.close()
      await cp.close()
      rmSync(dataDir, { recursive: true, force: true })
      rmPki(dir)
    },
  }
  return env
}

/** A fresh tenant id. */
export function tenantId(): string {
  return `t-${randomBytes(4).toString('hex')}`
}
