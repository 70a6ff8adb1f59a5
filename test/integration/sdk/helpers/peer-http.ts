/** A tiny scriptable real HTTP server for peers of the SDK (a resource server, a gateway). */
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'

export interface SeenRequest {
  method: string
  path: string
  headers: IncomingHttpHeaders
  body: string
}
export interface Answer {
  status: number
  body?: unknown
  headers?: Record<string, string>
  delayMs?: number
}
export type Handler = (req: SeenRequest) => Answer | Promise<Answer>

export interface PeerHttp {
  readonly url: string
  readonly seen: SeenRequest[]
  handler: Handler
  close(): Promise<void>
}

export async function startPeerHttp(handler: Handler): Promise<PeerHttp> {
  const peer = { seen: [] as SeenRequest[], handler, url: '', close: async () => {} }
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const seen = { method: req.method ?? '', path: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8') }
      peer.seen.push(seen)
      Promise.resolve(peer.handler(seen)).then(
        async (a) => {
          if (a.delayMs) await new Promise((r) => setTimeout(r, a.delayMs))
          res.writeHead(a.status, { 'content-type': 'application/json', ...a.headers })
          res.end(a.body === undefined ? '' : JSON.stringify(a.body))
        },
        () => {
          res.writeHead(500)
          res.end()
        },
      )
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  peer.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  peer.close = () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve())
      server.closeAllConnections()
    })
  return peer
}
