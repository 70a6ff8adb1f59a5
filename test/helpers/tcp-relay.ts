/**
 * A real TCP relay on loopback in front of a server, whose path can be cut:
 * `cut()` drops every relayed connection and refuses new ones until
 * `heal()`, as a partition that resets connections would; `stall()` keeps
 * every connection open but lets no byte through (held, delivered on
 * `resume()`), as a silent partition would while TCP retransmits. Tests use
 * it to decide which of two connections to the same server comes back first,
 * and to cut a connection without the server going away.
 */
import { createServer, connect, type Server, type Socket } from 'node:net'

interface Pipe {
  from: Socket
  to: Socket
  held: Buffer[]
}

export class TcpRelay {
  private readonly sockets = new Set<Socket>()
  private readonly pipes = new Set<Pipe>()
  private blocked = false
  private stalled = false

  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

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
      relay.relay(client, upstream)
      relay.relay(upstream, client)
      const end = (): void => {
        client.destroy()
        upstream.destroy()
      }
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

  /** Lets no byte through, either way, on any connection (new ones too), without closing any. */
  stall(): void {
    this.stalled = true
  }

  /** Delivers what was held and relays again. */
  resume(): void {
    this.stalled = false
    for (const p of this.pipes) {
      for (const chunk of p.held) if (!p.to.destroyed) p.to.write(chunk)
      p.held = []
    }
  }

  async close(): Promise<void> {
    this.cut()
    await new Promise<void>((resolve) => this.server.close(() => resolve()))
  }

  private relay(from: Socket, to: Socket): void {
    const pipe: Pipe = { from, to, held: [] }
    this.pipes.add(pipe)
    from.on('data', (chunk: Buffer) => {
      if (this.stalled) pipe.held.push(chunk)
      else if (!to.destroyed) to.write(chunk)
    })
    from.once('close', () => this.pipes.delete(pipe))
  }

  private track(s: Socket): void {
    this.sockets.add(s)
    s.once('close', () => this.sockets.delete(s))
  }
}
