import type { Logger } from '../observability/logger.js'
import type { DecisionSink, GatewayAuditEvent } from './deps.js'

/**
 * Writes each gateway audit event as one structured log line
 * (`{"audit": {...}, "msg": "audit"}`) at info level. Events never carry a
 * token, only its `jti`.
 */
export class LogDecisionSink implements DecisionSink {
  constructor(private readonly logger: Logger) {}

  record(event: GatewayAuditEvent): void {
    this.logger.info({ audit: event }, 'audit')
  }
}

/** Keeps events in memory (tests, embedding). */
export class MemoryDecisionSink implements DecisionSink {
  readonly events: GatewayAuditEvent[] = []
  constructor(private readonly max = 10_000) {}
  record(event: GatewayAuditEvent): void {
    if (this.events.length >= this.max) this.events.shift()
    this.events.push(event)
  }
}

/** Sends every event to several sinks. */
export class TeeDecisionSink implements DecisionSink {
  constructor(private readonly sinks: DecisionSink[]) {}
  record(event: GatewayAuditEvent, params?: Readonly<Record<string, unknown>>): void {
    for (const s of this.sinks) s.record(event, params)
  }
}
