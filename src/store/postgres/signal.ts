/**
 * ClusterSignal over PostgreSQL LISTEN/NOTIFY (src/store/signal.ts), on one
 * dedicated connection (a pooled one would lose its LISTEN when returned).
 * Channels are named per schema, so stores in different schemas of one
 * database (tests) never hear each other.
 */
import { createHash } from 'node:crypto'
import pg from 'pg'
import type { Logger } from '../../observability/logger.js'
import type { ClusterSignal } from '../signal.js'

type Listener = { onMessage: (payload: string) => void; onResync?: () => void }

class PostgresSignal implements ClusterSignal {
  private client: pg.Client | null = null
  private schema = ''
  private readonly listeners = new Map<string, Set<Listener>>()
  private connected = false
  private closed = false
  private connecting: Promise<void> | null = null
  private retryTimer: NodeJS.Timeout | undefined
  private failures = 0

  constructor(
    private readonly url: string,
    private readonly logger: Logger,
  ) {}

  get healthy(): boolean {
    return this.connected
  }

  /** The PostgreSQL channel for `channel` in this connection's schema (≤ 63 bytes, an identifier once quoted). */
  private pgChannel(channel: string): string {
    return `aegis_${channel.replace(/[^a-z0-9_]/gi, '_').slice(0, 24)}_${createHash('sha256').update(this.schema).digest('hex').slice(0, 16)}`
  }

  async connect(): Promise<void> {
    this.connecting ??= this.doConnect().finally(() => {
      this.connecting = null
    })
    return this.connecting
  }

  private async doConnect(): Promise<void> {
    const client = new pg.Client({ connectionString: this.url })
    client.on('error', (err) => this.lost(client, err))
    client.on('end', () => this.lost(client, new Error('connection ended')))
    client.on('notification', (n) => {
      if (n.payload === undefined) return
      for (const [channel, set] of this.listeners) {
        if (this.pgChannel(channel) !== n.channel) continue
        for (const l of [...set]) {
          try {
            l.onMessage(n.payload)
          } catch (err) {
            this.logger.error({ err, channel }, 'cluster signal listener failed')
          }
        }
      }
    })
    await client.connect()
    const res = await client.query<{ schema: string }>('SELECT current_schema() AS schema')
    this.schema = res.rows[0]?.schema ?? ''
    for (const channel of this.listeners.keys()) await client.query(`LISTEN ${client.escapeIdentifier(this.pgChannel(channel))}`)
    if (this.closed) {
      await client.end().catch(() => {})
      return
    }
    const wasReconnect = this.failures > 0
    this.client = client
    this.connected = true
    this.failures = 0
    if (wasReconnect) {
      this.logger.info('cluster signal reconnected')
      for (const set of this.listeners.values()) for (const l of set) l.onResync?.()
    }
  }

  private lost(client: pg.Client, err: Error): void {
    if (this.client !== client) return
    this.client = null
    this.connected = false
    client.end().catch(() => {})
    if (this.closed) return
    this.logger.warn({ err: err.message }, 'cluster signal connection lost; reconnecting')
    this.scheduleReconnect()
  }

  /** Reconnects later, with backoff (also used when the first connection failed). */
  scheduleReconnect(): void {
    if (this.closed || this.retryTimer) return
    this.failures++
    const delay = Math.min(5_000, 100 * 2 ** Math.min(this.failures, 6)) * (0.5 + Math.random() / 2)
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined
      this.connect().catch((err: unknown) => {
        this.logger.warn({ err: err instanceof Error ? err.message : String(err) }, 'cluster signal reconnect failed')
        this.scheduleReconnect()
      })
    }, delay)
    this.retryTimer.unref()
  }

  async notify(channel: string, payload: string): Promise<void> {
    const client = this.client
    if (!client || !this.connected) throw new Error('cluster signal not connected')
    await client.query('SELECT pg_notify($1, $2)', [this.pgChannel(channel), payload])
  }

  async listen(channel: string, onMessage: (payload: string) => void, onResync?: () => void): Promise<() => void> {
    let set = this.listeners.get(channel)
    const first = !set
    if (!set) {
      set = new Set()
      this.listeners.set(channel, set)
    }
    const l: Listener = { onMessage, ...(onResync ? { onResync } : {}) }
    set.add(l)
    if (first && this.client && this.connected) await this.client.query(`LISTEN ${this.client.escapeIdentifier(this.pgChannel(channel))}`)
    return () => {
      set.delete(l)
    }
  }

  async close(): Promise<void> {
    this.closed = true
    if (this.retryTimer) clearTimeout(this.retryTimer)
    this.retryTimer = undefined
    const c = this.client
    this.client = null
    this.connected = false
    await c?.end().catch(() => {})
  }
}

/**
 * Opens the LISTEN connection. A database that cannot be reached now is
 * retried in the background (the signal reports `healthy: false` meanwhile),
 * so a control plane never fails to start for want of it.
 */
export async function openPostgresSignal(url: string, logger: Logger): Promise<ClusterSignal> {
  const s = new PostgresSignal(url, logger)
  try {
    await s.connect()
  } catch (err) {
    logger.warn({ err: err instanceof Error ? err.message : String(err) }, 'cluster signal unavailable; retrying')
    s.scheduleReconnect()
  }
  return s
}
