/**
 * A real TCP relay on loopback in front of a server, whose path can be cut:
 * `cut()` drops every relayed connection and refuses new ones until
 * `heal()`, as a network partition between one client and the server would.
 * Tests use it to decide which of two connections to the same Redis comes
 * back first.
 */
import { createServer, connect, type Server, type Socket } from 'node:net'

export class TcpRelay {
  private readonly sockets = new Set<Socket>()
  private blocked = false

  private constructor(private readonly server: Server, readonly port: number) {}

  /** Listens on a free loopback port and relays to 127.0.0.1:`targetPort`. */
  static async start(targetPort: number): Promise<TcpRelay> {
    let relay: TcpRelay | undefined
    const server = createServer((client) => {
      if (!relay || relay.blocked) {
        client.destroy()
        return
      }
      const upstream = connect({ port: targetPort, host: '127.0.0.1' })
      relay.track(client)
      relay.track(upstream)
      client.pipe(upstream)
      upstream.pipe(client)
      const end = (): void => { client.destroy(); upstream.destroy() }
      client.on('error', end)
      upstream.on('error', end)
      client.on('close', end)
      upstream.on('close', end)
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    relay = new TcpRelay(server, (server.address() as { port: number }).port)
    return relay
  }

  /** `redis://127.0.0.1:<port>` through the relay. */
  get url(): string {
    return `redis://127.0.0.1:${this.port}`
  }

  /** Drops every relayed connection and refuses new ones. */
  cut(): void {
    this.blocked = true
    for (const s of this.sockets) s.destroy()
    this.sockets.clear()
  }

  /** Relays new connections again. */
  heal(): void {
    this.blocked = false
  }

  async close(): Promise<void> {
    this.cut()
    await new Promise<void>((resolve) => this.server.close(() => resolve()))
  }

  private track(s: Socket): void {
    this.sockets.add(s)
    s.once('close', () => this.sockets.delete(s))
  }
}
