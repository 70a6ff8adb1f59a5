/**
 * Storage contracts of the control plane. Each interface is named for what it
 * guarantees; backends (SQLite embedded, PostgreSQL for scale-out) live under
 * store/sqlite and store/postgres and pass the same contract suite
 * (test/contract/store.ts). Driver errors never leave store/: they become
 * NotFound / Conflict from errors.ts.
 *
 * Times are epoch milliseconds (`…At`) unless a name says seconds.
 */
import type { TokenFacts } from './deny-list.js'

export interface Tenant {
  id: string
  name: string
  requireAttestation: boolean
  /** Longest delegation chain (RFC 8693 `act` levels) a token may carry; null = the default (docs/delegation.md). */
  maxDelegationDepth?: number | null
  createdAt: number
}

export type TokenEndpointAuthMethod = 'client_secret_basic' | 'client_secret_post' | 'tls_client_auth' | 'private_key_jwt' | 'none'

export interface Agent {
  tenant: string
  agentId: string
  /** Stable client id for certificate / private_key_jwt authentication (`ag_…`). */
  clientId: string
  scopes: string[]
  capabilities: string[]
  /** JSON Schema per tool, only when registered. */
  schemas: Record<string, unknown> | null
  maxTtlSeconds: number
  audiences: string[]
  tokenEndpointAuthMethod: TokenEndpointAuthMethod
  /** RFC 7517 JWK Set for private_key_jwt. */
  jwks: { keys: Record<string, unknown>[] } | null
  tlsClientAuthSubjectDn: string | null
  tlsClientAuthSanUri: string | null
  tlsClientAuthSanDns: string | null
  /** base64url SHA-256 of the DER certificate (x5t#S256) pinned for tls_client_auth. */
  tlsClientAuthThumbprint: string | null
  capabilityHash: string
  /** Agents of the same tenant this one may delegate to (RFC 8693 token exchange with an actor_token); absent = none. */
  delegates?: string[]
  createdAt: number
  updatedAt: number
}

export type AgentPatch = Partial<Omit<Agent, 'tenant' | 'agentId' | 'clientId' | 'createdAt' | 'updatedAt'>>

export interface BootstrapCredential {
  clientId: string
  tenant: string
  agentId: string
  /** base64url SHA-256 of the secret; the secret has 256 bits of entropy, so a fast hash suffices. */
  secretHash: string
  expiresAt: number
  singleUse: boolean
  usedAt: number | null
  createdAt: number
}

export type AdminRole = 'admin' | 'gateway' | 'approver'

export interface AdminToken {
  id: string
  /** null = global. */
  tenant: string | null
  role: AdminRole
  name: string
  tokenHash: string
  /** For approvers: chat identities linked to this approver, e.g. `slack:T123/U456`, `teams:…`. */
  linkedIdentities: string[]
  /** Approver groups this token's holder belongs to (role approver or admin). */
  groups: string[]
  createdAt: number
  revokedAt: number | null
}

export type KeyState = 'next' | 'current' | 'previous' | 'retired'

export interface SigningKey {
  kid: string
  alg: 'EdDSA'
  state: KeyState
  /** Public JWK (OKP / Ed25519), without `d`. */
  publicJwk: Record<string, unknown>
  /** AES-256-GCM ciphertext of the PKCS#8 private key: base64url(iv || tag || ciphertext). */
  encryptedPrivateKey: string
  createdAt: number
  /** When it starts (or started) signing. */
  activatesAt: number
  /** When it stopped signing; null while next/current. */
  deactivatedAt: number | null
  /** When it leaves the JWKS; null until known. */
  retiresAt: number | null
  /** Emergency rotation revokes the kid at once. */
  revoked: boolean
}

export interface AuditEventInput {
  type: string
  tenant?: string | null
  /** Who caused it: `admin:<id>`, `agent:<tenant>/<agent>`, `client:<id>`, `system`. */
  actor?: string | null
  /** What it is about: agent id, jti, kid, policy id… */
  subject?: string | null
  /** Event details; never a token, secret or private key. */
  data?: Record<string, unknown>
}

export interface AuditEvent extends Required<Omit<AuditEventInput, 'data'>> {
  data: Record<string, unknown>
  /** Global, monotonically increasing id for paging (assigned by the store). */
  id: number
  /** Writer (control-plane instance) whose chain holds the event. */
  chainId: string
  /** Position in that chain, from 1. */
  chainSeq: number
  ts: number
  prevHash: string
  hash: string
}

/**
 * An audit event to store. `dataJson`, when the writer has it, is exactly
 * `JSON.stringify(data)` (the writer's canonical text of the data), so the
 * store does not serialize the data a second time on the issuance path.
 */
export type NewAuditEvent = Omit<AuditEvent, 'id'> & { readonly dataJson?: string }

export interface AuditCheckpoint {
  chainId: string
  chainSeq: number
  headHash: string
  ts: number
  kid: string
  /** Compact JWS (EdDSA) over {chain_id, chain_seq, head_hash, ts}. */
  signature: string
}

/**
 * A page of audit events, in id order (commit order), continuing from
 * `cursor`. With `since`, only the events whose ts (their writer's clock) is
 * at or after it: each appears exactly once across the pages, wherever its
 * writer's clock put it among the others.
 */
export interface AuditQuery {
  type?: string
  tenant?: string
  /** Epoch ms, inclusive. */
  since?: number
  /** Exact actor, e.g. `agent:acme/billing-bot` (an agent's token issuances). */
  actor?: string
  /** `asc` (default): oldest first, after the cursor; `desc`: newest first, before it. */
  order?: 'asc' | 'desc'
  /** The id where the previous page ended (see `order`). */
  cursor?: number
  limit: number
}

export type RevocationType = 'jti' | 'agent' | 'client' | 'tenant' | 'kid' | 'issued_before'

export interface Revocation {
  /** Feed sequence number, assigned by the store, strictly increasing. */
  seq: number
  type: RevocationType
  value: string
  tenant: string | null
  /** Only for issued_before scoped to one agent. */
  agentId: string | null
  reason: string | null
  createdAt: number
  /**
   * When no token it could match can still be alive (epoch ms); entries past
   * it are dropped. `agent`, `client` and `tenant` entries never lapse
   * ({@link REVOCATION_PERMANENT}) until an admin lifts them; a lift ends the
   * entry at once (expiresAt = liftedAt).
   */
  expiresAt: number
  /** Set once an admin lifted the entry (`DELETE /admin/v1/revocations/{seq}`), epoch ms. */
  liftedAt?: number
  /** Who lifted it (`admin:<id>`, `console:<id>`). */
  liftedBy?: string
  /** Feed sequence number the lift was published under (taken from the same sequence as `seq`). */
  liftSeq?: number
}

/**
 * `expiresAt` of an entry that stays in force until an admin lifts it (the
 * largest integer a JSON number carries exactly; gateways that compare it
 * with the time never drop it).
 */
export const REVOCATION_PERMANENT = Number.MAX_SAFE_INTEGER

export type PolicyMode = 'enforce' | 'shadow'
export type PolicyStatus = 'inactive' | 'active' | 'candidate'

export interface PolicyBundle {
  id: string
  tenant: string
  version: string
  cedar: string
  mode: PolicyMode
  status: PolicyStatus
  createdAt: number
  activatedAt: number | null
  /** Candidate-diff review gate. */
  reviewedAt: number | null
}

export type ApprovalStatus = 'pending' | 'approved' | 'denied' | 'expired'

export interface ApprovalDelivery {
  notifier: string
  status: 'pending' | 'delivered' | 'failed'
  attempts: number
  lastError: string | null
  updatedAt: number
}

export interface Approval {
  id: string
  tenant: string
  agentId: string
  tool: string
  /** RFC 8785 canonical JSON of the call parameters. */
  paramsCanonical: string
  /** base64url SHA-256 of paramsCanonical. */
  paramsHash: string
  resource: string | null
  /**
   * Reverse-proxy calls: RFC 8785 canonical JSON of the forwarded request
   * (`{method, path, query, body_sha256?}`), bound by the override's
   * `request_hash`; null for other entry points.
   */
  requestCanonical: string | null
  policyId: string
  policyVersion: string
  group: string
  /** Policy asked that only a console (admin login) decision counts. */
  requireConsole: boolean
  status: ApprovalStatus
  createdAt: number
  expiresAt: number
  decidedAt: number | null
  decidedBy: string | null
  reason: string | null
  overrideJti: string | null
  deliveries: ApprovalDelivery[]
}

export interface TrustedIssuer {
  id: string
  tenant: string
  issuer: string
  jwksUri: string | null
  jwks: { keys: Record<string, unknown>[] } | null
  audience: string
  rules: Array<{ claims: Record<string, string>; agentId: string }>
  /** Trusted for people's tokens (delegation on behalf of a user) with what each may be given; absent = not for people. */
  users?: UserMapping | null
  createdAt: number
}

/**
 * What a person's token from a trusted issuer may be given when an agent
 * acts on their behalf: the union of the grants whose `value` the token's
 * `claim` (a string or an array of strings) carries, and, when `resourcesClaim`
 * is set, the resource ids that claim lists (policies see them as
 * `context.delegation.user_resources`).
 */
export interface UserMapping {
  claim: string
  grants: Array<{ value: string; scopes: string[]; capabilities: string[] }>
  resourcesClaim?: string | null
  /** The agents that may act for these people; absent = every agent of the tenant. */
  agents?: string[] | null
}

export interface GatewayAck {
  gatewayId: string
  /** Last revocation feed sequence the gateway applied. */
  seq: number
  updatedAt: number
}

export interface TenantRepo {
  create(t: Tenant): Promise<void> // Conflict if id exists
  get(id: string): Promise<Tenant | null>
  list(): Promise<Tenant[]>
  update(id: string, patch: Partial<Omit<Tenant, 'id' | 'createdAt'>>): Promise<Tenant> // NotFound
  delete(id: string): Promise<void> // NotFound; also removes the tenant's agents and their bootstrap credentials
}

export interface AgentRepo {
  create(a: Agent): Promise<void> // Conflict on (tenant, agentId) or clientId; NotFound when the tenant does not exist
  get(tenant: string, agentId: string): Promise<Agent | null>
  getByClientId(clientId: string): Promise<Agent | null>
  list(tenant: string): Promise<Agent[]>
  /** All agents' current capability hashes (for the gateway feed). */
  listAll(): Promise<Agent[]>
  /**
   * One page of every agent's current capability hash, in (tenant, agentId)
   * order, after `after` (exclusive; null: from the first): the paged feed
   * snapshot, read without whole agent rows.
   */
  listHashesPage(after: { tenant: string; agentId: string } | null, limit: number): Promise<Array<{ tenant: string; agentId: string; capabilityHash: string }>>
  update(tenant: string, agentId: string, patch: AgentPatch, updatedAt: number): Promise<Agent> // NotFound
  delete(tenant: string, agentId: string): Promise<void> // NotFound; also removes the agent's bootstrap credentials
}

export interface CredentialRepo {
  create(c: BootstrapCredential): Promise<void> // Conflict on clientId; NotFound when the agent does not exist
  get(clientId: string): Promise<BootstrapCredential | null>
  /**
   * Marks a single-use credential used. Resolves false when it already was
   * (atomic: exactly one concurrent caller wins).
   */
  consume(clientId: string, at: number): Promise<boolean>
  deleteForAgent(tenant: string, agentId: string): Promise<void>
}

export interface AdminTokenRepo {
  create(t: AdminToken): Promise<void>
  getByHash(tokenHash: string): Promise<AdminToken | null>
  get(id: string): Promise<AdminToken | null>
  /** undefined = every token; null = global tokens only; a tenant = that tenant's tokens. */
  list(tenant?: string | null): Promise<AdminToken[]>
  revoke(id: string, at: number): Promise<void> // NotFound
}

export interface ManifestRepo {
  /** Idempotent: content-addressed by hash. */
  put(hash: string, manifest: unknown): Promise<void>
  get(hash: string): Promise<unknown | null>
}

export interface KeyRepo {
  list(): Promise<SigningKey[]>
  insert(k: SigningKey): Promise<void>
  update(kid: string, patch: Partial<Omit<SigningKey, 'kid' | 'alg' | 'publicJwk' | 'encryptedPrivateKey' | 'createdAt'>>): Promise<void> // NotFound
}

/** Options of {@link AuditRepo.append}. */
export interface AuditAppendOptions {
  /**
   * The chain head the events follow: its last chain_seq and hash (0 and
   * the genesis hash for an empty chain). When the stored head of the
   * events' chain differs, nothing is written and the append rejects, so a
   * batch chained on one that failed fails too.
   */
  follows?: { seq: number; hash: string }
}

export interface AuditRepo {
  /**
   * Appends events already chained by the writer, in one transaction: all or
   * none. Returns the assigned global ids in order.
   */
  append(events: NewAuditEvent[], opts?: AuditAppendOptions): Promise<number[]>
  /**
   * Batches one writer may have in flight at once. More than 1 only where
   * batches are written in the order they were handed over and each checks
   * `follows` (SQLite's append thread); 1 elsewhere.
   */
  readonly appendDepth: number
  /** Last event of a chain, or null. */
  head(chainId: string): Promise<Omit<AuditEvent, 'id'> | null>
  query(q: AuditQuery): Promise<AuditEvent[]>
  /** Every chain id. */
  chains(): Promise<string[]>
  /** A chain's events in chainSeq order, from `afterSeq` (exclusive), at most `limit`. */
  chain(chainId: string, afterSeq: number, limit: number): Promise<AuditEvent[]>
  putCheckpoint(c: AuditCheckpoint): Promise<void>
  /** Latest checkpoint per chain. */
  latestCheckpoints(): Promise<AuditCheckpoint[]>
  /** Every checkpoint of a chain in chainSeq order, from `afterSeq` (exclusive), at most `limit` (`aegis audit verify` checks them all). */
  checkpoints(chainId: string, afterSeq: number, limit: number): Promise<AuditCheckpoint[]>
}

/** What a decision-log record says happened (docs/reference.md "Audit"): the gateway audit event's type. */
export type DecisionRecordType = 'decision' | 'token.refused' | 'token.replayed' | 'decision.unavailable'

/**
 * One record of the decision log: a gateway's decision or refusal as it
 * uploaded it. Never a token or an override token: `jti` names a token, as
 * audit events do; `params` are the sanitized parameters (null when the
 * policy never ran, as for a refused token).
 */
export interface DecisionRecord {
  /** Gateway-assigned (32 lowercase hex), unique per decision: a retried upload carries the same ids. */
  id: string
  /** When the gateway decided (epoch ms). */
  ts: number
  /** When the control plane stored it (epoch ms). */
  receivedAt: number
  gatewayId: string
  type: DecisionRecordType
  /** Entry point: authorize, ext_authz, proxy, mcp. */
  mode: string
  tenant: string | null
  agentId: string | null
  clientId: string | null
  jti: string | null
  tool: string | null
  resource: string | null
  /** The policy decision, or `refused`, `replayed`, `unavailable` for the other types. */
  decision: string
  /** False for shadow decisions (would-deny included); null when no policy ran. */
  enforced: boolean | null
  reasons: string[]
  policyVersion: string | null
  policyIds: string[] | null
  risk: string | null
  degraded: string | null
  /** Why a token was refused (never the token). */
  error: string | null
  latencyMs: number | null
  /** W3C trace id of the call, when it came with `traceparent`. */
  traceId: string | null
  params: Record<string, unknown> | null
}

/** A page of the decision log: equality filters, a time range, newest first. */
export interface DecisionQuery {
  tenant?: string
  agentId?: string
  tool?: string
  decision?: string
  enforced?: boolean
  /** Epoch ms, inclusive. */
  since?: number
  /** Epoch ms, exclusive. */
  until?: number
  limit: number
  /** The last record of the previous page: the page starts strictly after it (older). */
  after?: { ts: number; id: string }
}

/**
 * The decision log. Records are keyed and ordered by (ts, id), so retention
 * deletes a prefix of the key and every filter of {@link DecisionQuery}
 * reads a page in order from an index ending in (ts, id).
 */
export interface DecisionRepo {
  /**
   * Stores records in one transaction, all or none, skipping any whose
   * (ts, id) is already stored (a retried upload). Resolves how many were new.
   */
  append(records: readonly DecisionRecord[]): Promise<number>
  /** Newest first: ts, then id, descending. */
  query(q: DecisionQuery): Promise<DecisionRecord[]>
  /** Deletes at most `limit` of the oldest records with ts < `before` (epoch ms); resolves how many. */
  prune(before: number, limit: number): Promise<number>
}

/**
 * Which revocations a page holds: one tenant's entries; with `agentId`, only
 * those naming that agent of the tenant (its `agent` entry and the
 * `issued_before` entries scoped to it), as the console's agent page shows.
 */
export interface RevocationFilter {
  tenant: string
  agentId?: string
}

export interface RevocationRepo {
  /** Persists an entry and assigns its seq. */
  add(r: Omit<Revocation, 'seq'>): Promise<Revocation>
  /** Live entries (expiresAt > now, not lifted), in seq order. */
  listActive(now: number): Promise<Revocation[]>
  /** One page of listActive: live entries with seq > afterSeq, in seq order, at most `limit` (the paged feed snapshot); only those `filter` selects. */
  listActivePage(now: number, afterSeq: number, limit: number, filter?: RevocationFilter): Promise<Revocation[]>
  /**
   * Live, unlifted `agent`, `client` and `tenant` entries, in seq order: what
   * the token endpoint refuses issuance for. Served by an index on type, so
   * it stays cheap with many jti entries in force.
   */
  listStanding(now: number): Promise<Revocation[]>
  /**
   * Live, unlifted entries that could cover one of these tokens: those whose
   * type and value name one of their jti, agent, client, tenant or kid, and
   * every `issued_before` entry (its value is a time), in seq order. The
   * caller decides which really match (control-plane/revocation/match.ts).
   * Served by an index on (type, value): introspection and token exchange
   * read a handful of rows, not every jti entry in force.
   */
  listCovering(tokens: readonly TokenFacts[], now: number): Promise<Revocation[]>
  /**
   * Lifts a live entry: records when and by whom, ends it (expiresAt = at)
   * and gives the lift the next feed seq. Resolves the lifted entry, or null
   * when no live, unlifted entry has that seq (of two concurrent lifts, one
   * gets null).
   */
  lift(seq: number, at: number, by: string): Promise<Revocation | null>
  /** Entries with seq > afterSeq. */
  since(afterSeq: number): Promise<Revocation[]>
  get(seq: number): Promise<Revocation | null>
  /** Highest seq assigned so far (0 when none). */
  lastSeq(): Promise<number>
  purgeExpired(now: number): Promise<number>
}

export interface PolicyRepo {
  create(b: PolicyBundle): Promise<void> // Conflict on (tenant, version)
  get(tenant: string, id: string): Promise<PolicyBundle | null>
  list(tenant: string): Promise<PolicyBundle[]>
  /** The active bundle of every tenant. */
  listActive(): Promise<PolicyBundle[]>
  /** Every tenant's candidate bundles, by tenant, then oldest first as `list` orders them (the feed carries a tenant's first). */
  listCandidates(): Promise<PolicyBundle[]>
  /** Makes `id` the tenant's only active bundle (atomic). */
  activate(tenant: string, id: string, at: number): Promise<PolicyBundle>
  update(tenant: string, id: string, patch: Partial<Pick<PolicyBundle, 'status' | 'mode' | 'reviewedAt'>>): Promise<PolicyBundle>
}

export interface ApprovalRepo {
  create(a: Approval): Promise<void>
  get(id: string): Promise<Approval | null>
  /** Open request of this agent for exactly this action, if any. */
  findOpen(tenant: string, agentId: string, tool: string, paramsHash: string, now: number): Promise<Approval | null>
  list(filter: { tenant?: string; status?: ApprovalStatus; limit: number }): Promise<Approval[]>
  /** Pending, unexpired requests of one tenant (and agent), or of every tenant when `tenant` is absent. */
  countOpen(filter: { tenant?: string; agentId?: string; now: number }): Promise<number>
  /**
   * Moves a pending, unexpired request to approved/denied. Resolves null when
   * it was not pending any more (so a double click changes nothing).
   */
  decide(
    id: string,
    d: { status: 'approved' | 'denied'; decidedBy: string; reason: string | null; decidedAt: number; overrideJti: string | null },
  ): Promise<Approval | null>
  setDeliveries(id: string, deliveries: ApprovalDelivery[]): Promise<void> // NotFound
  expire(now: number): Promise<Approval[]>
}

export interface TrustedIssuerRepo {
  create(t: TrustedIssuer): Promise<void>
  list(tenant: string): Promise<TrustedIssuer[]>
  /** All tenants' issuers with this `iss`. */
  findByIssuer(issuer: string): Promise<TrustedIssuer[]>
  delete(tenant: string, id: string): Promise<void> // NotFound
}

export interface GatewayAckRepo {
  put(a: GatewayAck): Promise<void>
  list(): Promise<GatewayAck[]>
}

/**
 * Console sessions that were logged out. A session cookie is MAC'd and
 * stateless, so logging out can only end it everywhere by recording its id
 * where every control plane looks; the record need outlive the session only
 * until the cookie's own expiry, after which the cookie is refused anyway.
 */
export interface ConsoleLogoutRepo {
  /** Records that session `sid` ended; kept until `expiresAt` (the session's expiry). Idempotent. */
  add(sid: string, expiresAt: number): Promise<void>
  /** Whether `sid` was logged out and not yet purged (one primary-key lookup). */
  has(sid: string): Promise<boolean>
  /** Drops records with expiresAt <= now; resolves how many. */
  purgeExpired(now: number): Promise<number>
}

/** One KPI count: `n` of `metric` for `tenant` ('' = all tenants) in 10-second `slot` (0 = all-time totals). */
export interface KpiCount {
  tenant: string
  slot: number
  metric: string
  n: number
}

/**
 * The console's KPI counters, shared by every control plane on the store:
 * each adds what it counted, so any of them reads the cluster's figures.
 */
export interface KpiRepo {
  /** Adds each count to its row (a missing row counts from 0), all in one transaction. */
  add(counts: readonly KpiCount[]): Promise<void>
  /** The rows of `tenant` that are totals (slot 0) or in slots >= `fromSlot`. */
  read(tenant: string, fromSlot: number): Promise<KpiCount[]>
  /** Drops history rows (slot > 0) older than `beforeSlot`; resolves how many. */
  prune(beforeSlot: number): Promise<number>
}

/** Everything the control plane persists. */
export interface Store {
  readonly kind: 'sqlite' | 'postgres'
  tenants: TenantRepo
  agents: AgentRepo
  credentials: CredentialRepo
  adminTokens: AdminTokenRepo
  manifests: ManifestRepo
  keys: KeyRepo
  audit: AuditRepo
  decisions: DecisionRepo
  revocations: RevocationRepo
  policies: PolicyRepo
  approvals: ApprovalRepo
  trustedIssuers: TrustedIssuerRepo
  gatewayAcks: GatewayAckRepo
  consoleLogouts: ConsoleLogoutRepo
  kpis: KpiRepo
  /**
   * Runs `fn` only if this process wins the named cluster-wide lock (PostgreSQL
   * advisory lock; in-process mutex on SQLite). Resolves `{ ran: false }` when
   * another holder has it, without waiting.
   */
  tryWithLock<T>(name: string, fn: () => Promise<T>): Promise<{ ran: true; value: T } | { ran: false }>
  close(): Promise<void>
}
