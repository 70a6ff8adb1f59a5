/**
 * Row mapping and driver-error translation shared by the two SQL backends
 * (store/sqlite, store/postgres). Both keep the same columns: JSON as TEXT (so
 * an audit event reads back byte for byte as written), times as 64-bit
 * integers, booleans as 0/1 (SQLite) or boolean (PostgreSQL accepts 0/1 input).
 */
import { AegisError, Conflict, NotFound, Unavailable } from '../../errors.js'
import type {
  AdminToken,
  Agent,
  Approval,
  AuditCheckpoint,
  AuditEvent,
  NewAuditEvent,
  BootstrapCredential,
  DecisionRecord,
  GatewayAck,
  PolicyBundle,
  Revocation,
  SigningKey,
  Tenant,
  TrustedIssuer,
} from '../types.js'

/** A result row as either driver returns it. */
export type Row = Record<string, unknown>

/**
 * The INSERT parameters of rows [at, at + n) of `table`, flattened for a
 * multi-row INSERT (a loop, not flatMap: V8's generic flattening cost a
 * tenth of the decision log's ingest CPU).
 */
export function flatParams<T>(table: Table<T>, rows: readonly T[], at: number, n: number): unknown[] {
  const params: unknown[] = []
  for (let k = at; k < at + n; k++) for (const v of table.toParams(rows[k]!)) params.push(v)
  return params
}

/** One entity's column list (insert order) and its two mappings. */
export interface Table<T> {
  table: string
  columns: readonly string[]
  toParams(v: T): unknown[]
  fromRow(r: Row): T
}

const num = (v: unknown): number => (typeof v === 'number' ? v : Number(v))
const numOrNull = (v: unknown): number | null => (v === null || v === undefined ? null : num(v))
const str = (v: unknown): string => String(v)
const strOrNull = (v: unknown): string | null => (v === null || v === undefined ? null : String(v))
const bool = (v: unknown): boolean => v === true || v === 1 || v === 1n || v === '1' || v === 't'
const b = (v: boolean): number => (v ? 1 : 0)
const json = (v: unknown): string => JSON.stringify(v)
const jsonOrNull = (v: unknown): string | null => (v === null || v === undefined ? null : JSON.stringify(v))
function parse<T>(v: unknown): T {
  return (typeof v === 'string' ? JSON.parse(v) : v) as T
}
function parseOrNull<T>(v: unknown): T | null {
  return v === null || v === undefined ? null : parse<T>(v)
}

export const tenants: Table<Tenant> = {
  table: 'tenants',
  columns: ['id', 'name', 'require_attestation', 'created_at', 'max_delegation_depth'],
  toParams: (t) => [t.id, t.name, b(t.requireAttestation), t.createdAt, t.maxDelegationDepth ?? null],
  // Optional fields are present only when set, so a record written without them reads back equal.
  fromRow: (r) => ({
    id: str(r.id),
    name: str(r.name),
    requireAttestation: bool(r.require_attestation),
    createdAt: num(r.created_at),
    ...(r.max_delegation_depth === null || r.max_delegation_depth === undefined ? {} : { maxDelegationDepth: num(r.max_delegation_depth) }),
  }),
}

export const agents: Table<Agent> = {
  table: 'agents',
  columns: [
    'tenant',
    'agent_id',
    'client_id',
    'scopes',
    'capabilities',
    'schemas',
    'max_ttl_seconds',
    'audiences',
    'token_endpoint_auth_method',
    'jwks',
    'tls_client_auth_subject_dn',
    'tls_client_auth_san_uri',
    'tls_client_auth_san_dns',
    'tls_client_auth_thumbprint',
    'capability_hash',
    'created_at',
    'updated_at',
    'delegates',
  ],
  toParams: (a) => [
    a.tenant,
    a.agentId,
    a.clientId,
    json(a.scopes),
    json(a.capabilities),
    jsonOrNull(a.schemas),
    a.maxTtlSeconds,
    json(a.audiences),
    a.tokenEndpointAuthMethod,
    jsonOrNull(a.jwks),
    a.tlsClientAuthSubjectDn,
    a.tlsClientAuthSanUri,
    a.tlsClientAuthSanDns,
    a.tlsClientAuthThumbprint,
    a.capabilityHash,
    a.createdAt,
    a.updatedAt,
    json(a.delegates ?? []),
  ],
  fromRow: (r) => ({
    tenant: str(r.tenant),
    agentId: str(r.agent_id),
    clientId: str(r.client_id),
    scopes: parse<string[]>(r.scopes),
    capabilities: parse<string[]>(r.capabilities),
    schemas: parseOrNull<Record<string, unknown>>(r.schemas),
    maxTtlSeconds: num(r.max_ttl_seconds),
    audiences: parse<string[]>(r.audiences),
    tokenEndpointAuthMethod: str(r.token_endpoint_auth_method) as Agent['tokenEndpointAuthMethod'],
    jwks: parseOrNull<{ keys: Record<string, unknown>[] }>(r.jwks),
    tlsClientAuthSubjectDn: strOrNull(r.tls_client_auth_subject_dn),
    tlsClientAuthSanUri: strOrNull(r.tls_client_auth_san_uri),
    tlsClientAuthSanDns: strOrNull(r.tls_client_auth_san_dns),
    tlsClientAuthThumbprint: strOrNull(r.tls_client_auth_thumbprint),
    capabilityHash: str(r.capability_hash),
    ...(r.delegates === null || r.delegates === undefined || r.delegates === '[]' ? {} : { delegates: parse<string[]>(r.delegates) }),
    createdAt: num(r.created_at),
    updatedAt: num(r.updated_at),
  }),
}

export const credentials: Table<BootstrapCredential> = {
  table: 'bootstrap_credentials',
  columns: ['client_id', 'tenant', 'agent_id', 'secret_hash', 'expires_at', 'single_use', 'used_at', 'created_at'],
  toParams: (c) => [c.clientId, c.tenant, c.agentId, c.secretHash, c.expiresAt, b(c.singleUse), c.usedAt, c.createdAt],
  fromRow: (r) => ({
    clientId: str(r.client_id),
    tenant: str(r.tenant),
    agentId: str(r.agent_id),
    secretHash: str(r.secret_hash),
    expiresAt: num(r.expires_at),
    singleUse: bool(r.single_use),
    usedAt: numOrNull(r.used_at),
    createdAt: num(r.created_at),
  }),
}

export const adminTokens: Table<AdminToken> = {
  table: 'admin_tokens',
  columns: ['id', 'tenant', 'role', 'name', 'token_hash', 'linked_identities', 'groups_', 'created_at', 'revoked_at'],
  toParams: (t) => [t.id, t.tenant, t.role, t.name, t.tokenHash, json(t.linkedIdentities), json(t.groups), t.createdAt, t.revokedAt],
  fromRow: (r) => ({
    id: str(r.id),
    tenant: strOrNull(r.tenant),
    role: str(r.role) as AdminToken['role'],
    name: str(r.name),
    tokenHash: str(r.token_hash),
    linkedIdentities: parse<string[]>(r.linked_identities),
    groups: parse<string[]>(r.groups_),
    createdAt: num(r.created_at),
    revokedAt: numOrNull(r.revoked_at),
  }),
}

export const signingKeys: Table<SigningKey> = {
  table: 'signing_keys',
  columns: ['kid', 'alg', 'state', 'public_jwk', 'encrypted_private_key', 'created_at', 'activates_at', 'deactivated_at', 'retires_at', 'revoked'],
  toParams: (k) => [k.kid, k.alg, k.state, json(k.publicJwk), k.encryptedPrivateKey, k.createdAt, k.activatesAt, k.deactivatedAt, k.retiresAt, b(k.revoked)],
  fromRow: (r) => ({
    kid: str(r.kid),
    alg: 'EdDSA',
    state: str(r.state) as SigningKey['state'],
    publicJwk: parse<Record<string, unknown>>(r.public_jwk),
    encryptedPrivateKey: str(r.encrypted_private_key),
    createdAt: num(r.created_at),
    activatesAt: num(r.activates_at),
    deactivatedAt: numOrNull(r.deactivated_at),
    retiresAt: numOrNull(r.retires_at),
    revoked: bool(r.revoked),
  }),
}

/** Audit events: `id` is assigned by the database, so it is not an insert column. */
export const auditEvents: Table<NewAuditEvent> & { withId(r: Row): AuditEvent } = {
  table: 'audit_events',
  columns: ['chain_id', 'chain_seq', 'type', 'tenant', 'actor', 'subject', 'data', 'ts', 'prev_hash', 'hash'],
  toParams: (e) => [
    e.chainId,
    e.chainSeq,
    e.type,
    e.tenant ?? null,
    e.actor ?? null,
    e.subject ?? null,
    e.dataJson ?? json(e.data ?? {}),
    e.ts,
    e.prevHash,
    e.hash,
  ],
  fromRow: (r) => ({
    chainId: str(r.chain_id),
    chainSeq: num(r.chain_seq),
    type: str(r.type),
    tenant: strOrNull(r.tenant),
    actor: strOrNull(r.actor),
    subject: strOrNull(r.subject),
    data: parse<Record<string, unknown>>(r.data),
    ts: num(r.ts),
    prevHash: str(r.prev_hash),
    hash: str(r.hash),
  }),
  withId: (r) => ({ id: num(r.id), ...auditEvents.fromRow(r) }),
}

export const auditCheckpoints: Table<AuditCheckpoint> = {
  table: 'audit_checkpoints',
  columns: ['chain_id', 'chain_seq', 'head_hash', 'ts', 'kid', 'signature'],
  toParams: (c) => [c.chainId, c.chainSeq, c.headHash, c.ts, c.kid, c.signature],
  fromRow: (r) => ({
    chainId: str(r.chain_id),
    chainSeq: num(r.chain_seq),
    headHash: str(r.head_hash),
    ts: num(r.ts),
    kid: str(r.kid),
    signature: str(r.signature),
  }),
}

/** Decision-log records (`params`, `reasons` and `policy_ids` as JSON text). */
export const decisions: Table<DecisionRecord> = {
  table: 'decisions',
  columns: [
    'ts',
    'id',
    'received_at',
    'gateway_id',
    'type',
    'mode',
    'tenant',
    'agent_id',
    'client_id',
    'jti',
    'tool',
    'resource',
    'decision',
    'enforced',
    'reasons',
    'policy_version',
    'policy_ids',
    'risk',
    'degraded',
    'error',
    'latency_ms',
    'trace_id',
    'params',
  ],
  toParams: (d) => [
    d.ts,
    d.id,
    d.receivedAt,
    d.gatewayId,
    d.type,
    d.mode,
    d.tenant,
    d.agentId,
    d.clientId,
    d.jti,
    d.tool,
    d.resource,
    d.decision,
    d.enforced === null ? null : b(d.enforced),
    json(d.reasons),
    d.policyVersion,
    jsonOrNull(d.policyIds),
    d.risk,
    d.degraded,
    d.error,
    d.latencyMs,
    d.traceId,
    jsonOrNull(d.params),
  ],
  fromRow: (r) => ({
    id: str(r.id),
    ts: num(r.ts),
    receivedAt: num(r.received_at),
    gatewayId: str(r.gateway_id),
    type: str(r.type) as DecisionRecord['type'],
    mode: str(r.mode),
    tenant: strOrNull(r.tenant),
    agentId: strOrNull(r.agent_id),
    clientId: strOrNull(r.client_id),
    jti: strOrNull(r.jti),
    tool: strOrNull(r.tool),
    resource: strOrNull(r.resource),
    decision: str(r.decision),
    enforced: r.enforced === null || r.enforced === undefined ? null : bool(r.enforced),
    reasons: parse<string[]>(r.reasons),
    policyVersion: strOrNull(r.policy_version),
    policyIds: parseOrNull<string[]>(r.policy_ids),
    risk: strOrNull(r.risk),
    degraded: strOrNull(r.degraded),
    error: strOrNull(r.error),
    latencyMs: numOrNull(r.latency_ms),
    traceId: strOrNull(r.trace_id),
    params: parseOrNull<Record<string, unknown>>(r.params),
  }),
}

/** A row of `SELECT tenant, agent_id, capability_hash FROM agents` (the feed snapshot's pages). */
export const agentHash = (r: Row): { tenant: string; agentId: string; capabilityHash: string } => ({
  tenant: str(r.tenant),
  agentId: str(r.agent_id),
  capabilityHash: str(r.capability_hash),
})

/** Only lifted entries carry the lift fields (an unlifted entry reads back as written). */
function withLift<R extends Omit<Revocation, 'seq'>>(v: R, r: Row): R {
  if (r.lifted_at !== null && r.lifted_at !== undefined) {
    v.liftedAt = num(r.lifted_at)
    v.liftedBy = str(r.lifted_by)
    v.liftSeq = num(r.lift_seq)
  }
  return v
}

/** Revocations: `seq` is assigned by the database. */
export const revocations: Table<Omit<Revocation, 'seq'>> & { withSeq(r: Row): Revocation } = {
  table: 'revocations',
  columns: ['type', 'value', 'tenant', 'agent_id', 'reason', 'created_at', 'expires_at'],
  toParams: (v) => [v.type, v.value, v.tenant, v.agentId, v.reason, v.createdAt, v.expiresAt],
  // Every row has its seq: read back, a revocation always carries it.
  fromRow: (r) => revocations.withSeq(r),
  // One object literal, no spread: the feed snapshot reads 100,000s of these.
  withSeq: (r) =>
    withLift(
      {
        seq: num(r.seq),
        type: str(r.type) as Revocation['type'],
        value: str(r.value),
        tenant: strOrNull(r.tenant),
        agentId: strOrNull(r.agent_id),
        reason: strOrNull(r.reason),
        createdAt: num(r.created_at),
        expiresAt: num(r.expires_at),
      },
      r,
    ),
}

export const policies: Table<PolicyBundle> = {
  table: 'policy_bundles',
  columns: ['id', 'tenant', 'version', 'cedar', 'mode', 'status', 'created_at', 'activated_at', 'reviewed_at'],
  toParams: (p) => [p.id, p.tenant, p.version, p.cedar, p.mode, p.status, p.createdAt, p.activatedAt, p.reviewedAt],
  fromRow: (r) => ({
    id: str(r.id),
    tenant: str(r.tenant),
    version: str(r.version),
    cedar: str(r.cedar),
    mode: str(r.mode) as PolicyBundle['mode'],
    status: str(r.status) as PolicyBundle['status'],
    createdAt: num(r.created_at),
    activatedAt: numOrNull(r.activated_at),
    reviewedAt: numOrNull(r.reviewed_at),
  }),
}

export const approvals: Table<Approval> = {
  table: 'approvals',
  columns: [
    'id',
    'tenant',
    'agent_id',
    'tool',
    'params_canonical',
    'params_hash',
    'resource',
    'policy_id',
    'policy_version',
    'group_',
    'require_console',
    'status',
    'created_at',
    'expires_at',
    'decided_at',
    'decided_by',
    'reason',
    'override_jti',
    'deliveries',
    'request_canonical',
  ],
  toParams: (a) => [
    a.id,
    a.tenant,
    a.agentId,
    a.tool,
    a.paramsCanonical,
    a.paramsHash,
    a.resource,
    a.policyId,
    a.policyVersion,
    a.group,
    b(a.requireConsole),
    a.status,
    a.createdAt,
    a.expiresAt,
    a.decidedAt,
    a.decidedBy,
    a.reason,
    a.overrideJti,
    json(a.deliveries),
    a.requestCanonical,
  ],
  fromRow: (r) => ({
    id: str(r.id),
    tenant: str(r.tenant),
    agentId: str(r.agent_id),
    tool: str(r.tool),
    paramsCanonical: str(r.params_canonical),
    paramsHash: str(r.params_hash),
    resource: strOrNull(r.resource),
    policyId: str(r.policy_id),
    policyVersion: str(r.policy_version),
    group: str(r.group_),
    requireConsole: bool(r.require_console),
    status: str(r.status) as Approval['status'],
    createdAt: num(r.created_at),
    expiresAt: num(r.expires_at),
    decidedAt: numOrNull(r.decided_at),
    decidedBy: strOrNull(r.decided_by),
    reason: strOrNull(r.reason),
    overrideJti: strOrNull(r.override_jti),
    deliveries: parse<Approval['deliveries']>(r.deliveries),
    requestCanonical: strOrNull(r.request_canonical),
  }),
}

export const trustedIssuers: Table<TrustedIssuer> = {
  table: 'trusted_issuers',
  columns: ['id', 'tenant', 'issuer', 'jwks_uri', 'jwks', 'audience', 'rules', 'created_at', 'users'],
  toParams: (t) => [t.id, t.tenant, t.issuer, t.jwksUri, jsonOrNull(t.jwks), t.audience, json(t.rules), t.createdAt, jsonOrNull(t.users)],
  fromRow: (r) => ({
    id: str(r.id),
    tenant: str(r.tenant),
    issuer: str(r.issuer),
    jwksUri: strOrNull(r.jwks_uri),
    jwks: parseOrNull<{ keys: Record<string, unknown>[] }>(r.jwks),
    audience: str(r.audience),
    rules: parse<TrustedIssuer['rules']>(r.rules),
    ...(r.users === null || r.users === undefined ? {} : { users: parse<NonNullable<TrustedIssuer['users']>>(r.users) }),
    createdAt: num(r.created_at),
  }),
}

export const gatewayAcks: Table<GatewayAck> = {
  table: 'gateway_acks',
  columns: ['gateway_id', 'seq', 'updated_at'],
  toParams: (a) => [a.gatewayId, a.seq, a.updatedAt],
  fromRow: (r) => ({ gatewayId: str(r.gateway_id), seq: num(r.seq), updatedAt: num(r.updated_at) }),
}

/** A LIMIT value both databases accept: NaN → 0, negatives → 0, Infinity → no practical limit. */
export function sqlLimit(n: number): number {
  return Number.isNaN(n) ? 0 : Math.max(0, Math.min(Math.floor(n), Number.MAX_SAFE_INTEGER))
}

/** Drops `undefined` values so a patch never clears a field by omission. */
export function definedOnly<T extends object>(patch: T): Partial<T> {
  const out: Partial<T> = {}
  for (const [k, v] of Object.entries(patch)) if (v !== undefined) (out as Record<string, unknown>)[k] = v
  return out
}

/**
 * Turns a driver error into ours, so nothing above store/ sees a pg or
 * SQLite error: unique violations → Conflict, foreign-key violations →
 * NotFound (the referenced row is missing), anything else → Unavailable
 * (503, the caller fails closed) with the driver error as `cause`.
 */
export function storeError(err: unknown, what: string): AegisError {
  if (err instanceof AegisError) return err
  const code = typeof err === 'object' && err !== null && 'code' in err ? String((err as { code: unknown }).code) : ''
  if (code === '23505' || code === 'SQLITE_CONSTRAINT_UNIQUE' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY') {
    return new Conflict(`${what} already exists`, { cause: err })
  }
  if (code === '23503' || code === 'SQLITE_CONSTRAINT_FOREIGNKEY') {
    return new NotFound(`${what}: referenced record not found`, { cause: err })
  }
  return new Unavailable('storage unavailable', { cause: err })
}
