import type { AuditEventInput } from '../../store/types.js'

/**
 * This control plane's audit chain writer. Events are chained in process
 * (one chain per instance) and written with group commit: every event
 * appended in the same tick lands in one transaction, and each caller's
 * promise resolves only once its event is durable. A caller that must not
 * answer before its event is stored (token issuance) awaits `append`.
 */
export interface AuditWriter {
  /** Resolves when the event is committed; rejects if the write failed. */
  append(event: AuditEventInput): Promise<void>
  /** Writes pending events and a final checkpoint, then stops the checkpoint timer. */
  close(): Promise<void>
  readonly chainId: string
}
