/**
 * A broadcast between the control planes that share one store, for changes
 * every one of them must act on at once (a key rotation): PostgreSQL
 * LISTEN/NOTIFY when the store is PostgreSQL, an in-process bus keyed by the
 * database file on SQLite (which is not shared between processes anyway).
 * Delivery is at most once: a listener whose connection dropped is told so
 * (`onResync`) and must reload what it caches.
 */
import { EventEmitter } from 'node:events'
import { resolve, join } from 'node:path'
import type { AegisConfig } from '../config/schema.js'
import type { Logger } from '../observability/logger.js'
import { openPostgresSignal } from './postgres/signal.js'

/** Largest payload notify() takes (PostgreSQL's NOTIFY limit is 8000 bytes). */
export const MAX_SIGNAL_PAYLOAD = 7_900

export interface ClusterSignal {
  /**
   * Sends `payload` to every listener of `channel` in the cluster, this
   * process's included. Rejects when the message could not be handed over.
   */
  notify(channel: string, payload: string): Promise<void>
  /**
   * Calls `onMessage` with each payload sent on `channel`. `onResync` runs
   * after the connection was lost and re-established: messages may have
   * been missed meanwhile. Resolves with the function that stops listening.
   */
  listen(channel: string, onMessage: (payload: string) => void, onResync?: () => void): Promise<() => void>
  /** True while messages are being received (false while reconnecting). */
  readonly healthy: boolean
  close(): Promise<void>
}

const buses = new Map<string, EventEmitter>()

/** In-process bus: every control plane of this process on the same SQLite file hears every message. */
class LocalSignal implements ClusterSignal {
  private readonly bus: EventEmitter
  private readonly offs = new Set<() => void>()
  readonly healthy = true

  constructor(key: string) {
    let bus = buses.get(key)
    if (!bus) {
      bus = new EventEmitter()
      bus.setMaxListeners(0)
      buses.set(key, bus)
    }
    this.bus = bus
  }

  async notify(channel: string, payload: string): Promise<void> {
    if (Buffer.byteLength(payload) > MAX_SIGNAL_PAYLOAD) throw new RangeError('signal payload too large')
    // Asynchronous like NOTIFY: a listener never runs inside the sender's call.
    queueMicrotask(() => this.bus.emit(channel, payload))
  }

  async listen(channel: string, onMessage: (payload: string) => void): Promise<() => void> {
    this.bus.on(channel, onMessage)
    const off = (): void => {
      this.bus.off(channel, onMessage)
      this.offs.delete(off)
    }
    this.offs.add(off)
    return off
  }

  async close(): Promise<void> {
    for (const off of [...this.offs]) off()
  }
}

/** Opens the signal matching the configured store (PostgreSQL when `databaseUrl` is set). */
export async function openClusterSignal(config: AegisConfig, logger: Logger): Promise<ClusterSignal> {
  if (config.databaseUrl) return openPostgresSignal(config.databaseUrl, logger)
  return new LocalSignal(resolve(join(config.dataDir, 'aegis.db')))
}
