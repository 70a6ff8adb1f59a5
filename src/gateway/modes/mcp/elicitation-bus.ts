/**
 * What the MCP approval flow of one gateway process tells the others over
 * Redis pub/sub (elicitation.ts): which sessions declared URL elicitation,
 * which calls wait for which approval, which were spent, and which
 * elicitations completed. An MCP client's requests may reach different
 * gateway processes (the workers of one gateway share its port, a load
 * balancer spreads gateways): `initialize` on one, the `GET` stream on
 * another, the retry on a third. Each process keeps its own copy and applies
 * what the others publish, so the request path never waits for Redis; a
 * message lost while Redis is out costs a usability step (the client is
 * asked again, or gets no completion notification), never a second use of
 * an approval: the override's single use is the replay cache's.
 */
import { randomBytes } from 'node:crypto'
import type { Redis } from 'ioredis'
import type { Logger } from '../../../observability/logger.js'
import { redisCommandConnection, redisSubscriberConnection } from '../../redis-connections.js'
import { isPlainObject } from '../common.js'

export type BusMessage =
  | { t: 'session'; sid: string; capable: boolean }
  | { t: 'pending'; key: string; approvalId: string; elicitationId: string }
  /** An approval's override was spent (`key`: the 2025-11-25 call that waited for it, null for a 2026-07-28 state). */
  | { t: 'spent'; key: string | null; approvalId: string }
  | { t: 'complete'; sid: string; elicitationId: string }

const MAX_MESSAGE_BYTES = 4096
const MAX_FIELD = 2048

/** One process's end of the bus. */
export class ElicitationBus {
  private readonly origin = randomBytes(9).toString('base64url')
  private readonly pub: Redis
  private readonly sub: Redis
  private handler: (m: BusMessage) => void = () => {}

  constructor(
    redisUrl: string,
    private readonly channel: string,
    private readonly logger: Logger,
    commandTimeoutMs: number,
  ) {
    this.pub = redisCommandConnection(redisUrl, commandTimeoutMs)
    this.sub = redisSubscriberConnection(redisUrl)
    // Connection errors are the gateway's Redis health's to report; here they only cost a message.
    this.pub.on('error', () => {})
    this.sub.on('error', () => {})
    this.sub.on('message', (ch: string, text: string) => {
      if (ch !== this.channel || text.length > MAX_MESSAGE_BYTES) return
      const m = parse(text, this.origin)
      if (m !== null) this.handler(m)
    })
    this.sub.subscribe(channel).catch((err: unknown) => this.logger.warn({ err }, 'MCP approvals: cannot subscribe to the Redis channel'))
  }

  /** Messages of the other processes (never this one's own). */
  onMessage(handler: (m: BusMessage) => void): void {
    this.handler = handler
  }

  publish(m: BusMessage): void {
    this.pub.publish(this.channel, JSON.stringify({ ...m, o: this.origin })).catch(() => {
      // Redis out: the other processes miss this one; see the module comment for what that costs.
    })
  }

  async close(): Promise<void> {
    this.sub.disconnect()
    this.pub.disconnect()
  }
}

function str(v: unknown): v is string {
  return typeof v === 'string' && v.length > 0 && v.length <= MAX_FIELD
}

function parse(text: string, self: string): BusMessage | null {
  let m: unknown
  try {
    m = JSON.parse(text)
  } catch {
    return null
  }
  if (!isPlainObject(m) || m.o === self) return null
  if (m.t === 'session' && str(m.sid) && typeof m.capable === 'boolean') return { t: 'session', sid: m.sid, capable: m.capable }
  if (m.t === 'pending' && str(m.key) && str(m.approvalId) && str(m.elicitationId))
    return { t: 'pending', key: m.key, approvalId: m.approvalId, elicitationId: m.elicitationId }
  if (m.t === 'spent' && (m.key === null || str(m.key)) && str(m.approvalId)) return { t: 'spent', key: m.key, approvalId: m.approvalId }
  if (m.t === 'complete' && str(m.sid) && str(m.elicitationId)) return { t: 'complete', sid: m.sid, elicitationId: m.elicitationId }
  return null
}
