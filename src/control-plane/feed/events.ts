/**
 * The control plane → gateway feed (docs/reference.md "Revocation", "Gateway"). One
 * ordered stream per control-plane cluster carries revocations, agents'
 * current capability hashes and policy bundle changes. Transport: Redis
 * pub/sub (channel `aegis:feed`) when configured, else server-sent events on
 * `GET /admin/v1/revocations/stream` (event name = `kind`, SSE `id` = seq for
 * revocations). A (re)connecting gateway first loads a snapshot.
 *
 * Wire (fixed here so both ends agree):
 * - `GET /admin/v1/feed/snapshot` (role gateway or admin) → FeedSnapshot JSON.
 *   With `?paged=true`: the same as NDJSON pages, read and sent page by page
 *   (`{"begin"}`, `{"revocations": [...]}`, `{"agents": [...]}`, `{"end":
 *   {"seq", "revocations", "agents", "cursor"}}`; src/control-plane/admin/feed-stream.ts).
 * - `GET /admin/v1/revocations/stream` (role gateway or admin): SSE. First
 *   `event: snapshot` with a FeedSnapshot, then one event per change:
 *   `event: <kind>` + `data: <FeedEvent JSON>` (+ `id: <seq>` for
 *   revocations and lifts); a `: ping` comment every 15 s keeps proxies from
 *   closing it.
 * - `GET /admin/v1/revocations/stream?v=2`: paged and resumable. With a
 *   `Last-Event-ID` the control plane's feed log still covers, `event:
 *   resumed` then what followed it; otherwise `snapshot-begin`,
 *   `snapshot-revocations` / `snapshot-agents` pages, `snapshot-end`, then
 *   changes. Every event after the snapshot has `id: <cursor>` (a position
 *   in that control plane's log, src/control-plane/feed/log.ts).
 * - `?v=3` on either paged form: the same, with each page's entries as
 *   tuples (RevocationTuple, AgentTuple) instead of objects: 100,000
 *   revocations are about half the bytes, and half the work to write and to
 *   parse for a starting gateway (issue 14: ready within 2 s). Changes after
 *   the snapshot stay FeedEvent JSON.
 * - Redis: `PUBLISH aegis:feed <FeedEvent JSON>` with `"pos": <stream id>`
 *   added; revocations are also persisted in hash `aegis:revocations` (field
 *   = seq, value = Revocation JSON) so a starting gateway can load them even
 *   with the control plane down; a lift deletes its field in the same
 *   script; each event is also appended to the stream `aegis:feed:log`
 *   (field `e`, about 100,000 kept), from which a reconnecting gateway
 *   reads what it missed.
 * - `keys` events: the signing keys changed; gateways refetch the JWKS now.
 * - Acknowledged propagation: a gateway `POST /admin/v1/gateways/acks`
 *   `{"gateway_id", "seq"}` after applying entries (at most a few times a
 *   second); `GET /admin/v1/gateways` lists gateways with their seq and lag;
 *   `GET /admin/v1/revocations/{seq}` shows `applied_by` / `pending`.
 */
import type { PolicyMode, Revocation } from '../../store/types.js'

export interface AgentState {
  tenant: string
  agentId: string
  /** Current capability_hash; null when the agent was deleted. */
  capabilityHash: string | null
}

/**
 * A revocation in a `?v=3` snapshot page. `reason` is left out: gateways
 * never use it (the admin API and the audit log keep it).
 */
export type RevocationTuple = [
  seq: number,
  type: Revocation['type'],
  value: string,
  tenant: string | null,
  agentId: string | null,
  createdAt: number,
  expiresAt: number,
]

/** An agent in a `?v=3` snapshot page. */
export type AgentTuple = [tenant: string, agentId: string, capabilityHash: string | null]

export const revocationTuple = (r: Revocation): RevocationTuple => [r.seq, r.type, r.value, r.tenant, r.agentId, r.createdAt, r.expiresAt]
export const agentTuple = (a: AgentState): AgentTuple => [a.tenant, a.agentId, a.capabilityHash]

export interface PolicyState {
  tenant: string
  /** Active bundle, or null when the tenant has none (strict engine). */
  active: { id: string; version: string; cedar: string; mode: PolicyMode } | null
  /** Candidate evaluated side by side with the active bundle. */
  candidate: { id: string; version: string; cedar: string } | null
}

export type FeedEvent =
  | { kind: 'revocation'; revocation: Revocation }
  /**
   * An admin lifted entry `revocation.seq` (DELETE /admin/v1/revocations/{seq}):
   * gateways drop it. `seq` is the lift's own feed seq (SSE `id`), so a
   * gateway's applied seq covers lifts too.
   */
  | { kind: 'revocation_lifted'; seq: number; revocation: Revocation }
  | { kind: 'agent'; agent: AgentState }
  | { kind: 'policy'; policy: PolicyState }
  | { kind: 'keys'; keys: KeysState }

/**
 * The signing keys changed (a rotation, a scheduled `next` key): a gateway
 * refetches the JWKS at once, whatever its unknown-kid cooldown, until it
 * holds every kid listed. Only kids travel here, never keys: the JWKS is
 * still read from the control plane.
 */
export interface KeysState {
  /** kid signing now. */
  current: string
  /** Every published kid (next, current, previous). */
  kids: string[]
  /** kids an emergency rotation revoked (their `kid` revocation follows on the feed). */
  revoked: string[]
}

export interface FeedSnapshot {
  /** Highest revocation seq included. */
  seq: number
  revocations: Revocation[]
  agents: AgentState[]
  policies: PolicyState[]
  /** Epoch ms at which it was read. */
  generatedAt: number
  /** The key set at that time (absent from older control planes). */
  keys?: KeysState
}

/**
 * What a gateway compares now and then to find a missed feed event
 * (`GET /admin/v1/feed/snapshot?summary=true`): the snapshot without its
 * revocations, whose highest seq stands for them. Never loaded as a
 * snapshot: it would empty a deny list.
 */
export interface FeedSummary {
  /** The highest revocation seq assigned when it was read. */
  seq: number
  agents: AgentState[]
  policies: PolicyState[]
  generatedAt: number
}

/** Control-plane side: publishes every change to all gateways. */
export interface FeedPublisher {
  publish(event: FeedEvent): Promise<void>
  close(): Promise<void>
}
