/**
 * The versioned schema of both SQL stores, written once. The tables,
 * columns, indexes and data migrations are the same on SQLite and
 * PostgreSQL; a {@link SchemaDialect} names what differs (column types, STRICT
 * tables, the clock). Append new versions; never edit one that has shipped:
 * existing databases have them applied, and each version must give exactly
 * the schema it always gave.
 */

/** One schema version: run once, in its own transaction, recorded in `schema_migrations`. */
export interface Migration {
  version: number
  name: string
  sql: string
}

/** Where the two databases' schemas differ, by name. */
export interface SchemaDialect {
  /** A 64-bit integer column: epoch-ms times, counts, sequences. */
  readonly int: string
  /** A boolean column (SQLite has none: 0/1 in an INTEGER). */
  readonly bool: string
  /** A primary key the database assigns, increasing and never reused after a delete. */
  readonly serialKey: string
  /** After a CREATE TABLE's closing parenthesis: SQLite's ` STRICT` makes each column check its type. */
  readonly strict: string
  /** The current time in epoch milliseconds, as an integer expression. */
  readonly nowMs: string
}

/**
 * The marks of the events already stored: the running maximum of ts in id
 * order, rounded up to the end of its second, one mark where it first
 * reaches each value. Migration 15 runs it once (one pass over the log);
 * the log-query bench after its bulk fill. Never edit: a shipped migration
 * must give the schema it always gave.
 */
export const AUDIT_TIME_MARKS_FROM_EVENTS = `INSERT INTO audit_time_marks (first_id, max_ts)
SELECT MIN(id), top FROM (
  SELECT id, (MAX(ts) OVER (ORDER BY id ROWS UNBOUNDED PRECEDING) / 1000) * 1000 + 999 AS top FROM audit_events
) running GROUP BY top;`

/** Every migration, in the given dialect. */
export function sqlMigrations({ int, bool, serialKey, strict, nowMs }: SchemaDialect): readonly Migration[] {
  return [
    {
      version: 1,
      name: 'initial',
      sql: `
CREATE TABLE tenants (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  require_attestation ${bool} NOT NULL,
  created_at ${int} NOT NULL
)${strict};

CREATE TABLE agents (
  tenant TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  agent_id TEXT NOT NULL,
  client_id TEXT NOT NULL UNIQUE,
  scopes TEXT NOT NULL,
  capabilities TEXT NOT NULL,
  schemas TEXT,
  max_ttl_seconds ${int} NOT NULL,
  audiences TEXT NOT NULL,
  token_endpoint_auth_method TEXT NOT NULL,
  jwks TEXT,
  tls_client_auth_subject_dn TEXT,
  tls_client_auth_san_uri TEXT,
  tls_client_auth_san_dns TEXT,
  tls_client_auth_thumbprint TEXT,
  capability_hash TEXT NOT NULL,
  created_at ${int} NOT NULL,
  updated_at ${int} NOT NULL,
  PRIMARY KEY (tenant, agent_id)
)${strict};

CREATE TABLE bootstrap_credentials (
  client_id TEXT PRIMARY KEY,
  tenant TEXT NOT NULL,
  agent_id TEXT NOT NULL,
  secret_hash TEXT NOT NULL,
  expires_at ${int} NOT NULL,
  single_use ${bool} NOT NULL,
  used_at ${int},
  created_at ${int} NOT NULL,
  FOREIGN KEY (tenant, agent_id) REFERENCES agents(tenant, agent_id) ON DELETE CASCADE
)${strict};
CREATE INDEX bootstrap_credentials_agent ON bootstrap_credentials (tenant, agent_id);

CREATE TABLE admin_tokens (
  id TEXT PRIMARY KEY,
  tenant TEXT,
  role TEXT NOT NULL,
  name TEXT NOT NULL,
  token_hash TEXT NOT NULL UNIQUE,
  linked_identities TEXT NOT NULL,
  groups_ TEXT NOT NULL,
  created_at ${int} NOT NULL,
  revoked_at ${int}
)${strict};

CREATE TABLE manifests (
  hash TEXT PRIMARY KEY,
  manifest TEXT NOT NULL
)${strict};

CREATE TABLE signing_keys (
  kid TEXT PRIMARY KEY,
  alg TEXT NOT NULL,
  state TEXT NOT NULL,
  public_jwk TEXT NOT NULL,
  encrypted_private_key TEXT NOT NULL,
  created_at ${int} NOT NULL,
  activates_at ${int} NOT NULL,
  deactivated_at ${int},
  retires_at ${int},
  revoked ${bool} NOT NULL
)${strict};

CREATE TABLE audit_events (
  id ${serialKey},
  chain_id TEXT NOT NULL,
  chain_seq ${int} NOT NULL,
  type TEXT NOT NULL,
  tenant TEXT,
  actor TEXT,
  subject TEXT,
  data TEXT NOT NULL,
  ts ${int} NOT NULL,
  prev_hash TEXT NOT NULL,
  hash TEXT NOT NULL,
  UNIQUE (chain_id, chain_seq)
)${strict};
CREATE INDEX audit_events_type ON audit_events (type, id);
CREATE INDEX audit_events_tenant ON audit_events (tenant, id);
CREATE INDEX audit_events_ts ON audit_events (ts);

CREATE TABLE audit_checkpoints (
  chain_id TEXT NOT NULL,
  chain_seq ${int} NOT NULL,
  head_hash TEXT NOT NULL,
  ts ${int} NOT NULL,
  kid TEXT NOT NULL,
  signature TEXT NOT NULL,
  PRIMARY KEY (chain_id, chain_seq)
)${strict};

-- AUTOINCREMENT: a purged seq is never handed out again, so the feed's
-- sequence stays strictly increasing.
CREATE TABLE revocations (
  seq ${serialKey},
  type TEXT NOT NULL,
  value TEXT NOT NULL,
  tenant TEXT,
  agent_id TEXT,
  reason TEXT,
  created_at ${int} NOT NULL,
  expires_at ${int} NOT NULL
)${strict};
CREATE INDEX revocations_expires ON revocations (expires_at);

CREATE TABLE policy_bundles (
  id TEXT PRIMARY KEY,
  tenant TEXT NOT NULL,
  version TEXT NOT NULL,
  cedar TEXT NOT NULL,
  mode TEXT NOT NULL,
  status TEXT NOT NULL,
  created_at ${int} NOT NULL,
  activated_at ${int},
  reviewed_at ${int},
  UNIQUE (tenant, version)
)${strict};
-- At most one active bundle per tenant, whatever the code above does.
CREATE UNIQUE INDEX policy_bundles_one_active ON policy_bundles (tenant) WHERE status = 'active';

CREATE TABLE approvals (
  id TEXT PRIMARY KEY,
  tenant TEXT NOT NULL,
  agent_id TEXT NOT NULL,
  tool TEXT NOT NULL,
  params_canonical TEXT NOT NULL,
  params_hash TEXT NOT NULL,
  resource TEXT,
  policy_id TEXT NOT NULL,
  policy_version TEXT NOT NULL,
  group_ TEXT NOT NULL,
  require_console ${bool} NOT NULL,
  status TEXT NOT NULL,
  created_at ${int} NOT NULL,
  expires_at ${int} NOT NULL,
  decided_at ${int},
  decided_by TEXT,
  reason TEXT,
  override_jti TEXT,
  deliveries TEXT NOT NULL
)${strict};
CREATE INDEX approvals_open ON approvals (tenant, agent_id, status, expires_at);
CREATE INDEX approvals_status ON approvals (status, expires_at);

CREATE TABLE trusted_issuers (
  id TEXT PRIMARY KEY,
  tenant TEXT NOT NULL,
  issuer TEXT NOT NULL,
  jwks_uri TEXT,
  jwks TEXT,
  audience TEXT NOT NULL,
  rules TEXT NOT NULL,
  created_at ${int} NOT NULL
)${strict};
CREATE INDEX trusted_issuers_issuer ON trusted_issuers (issuer);
CREATE INDEX trusted_issuers_tenant ON trusted_issuers (tenant);

CREATE TABLE gateway_acks (
  gateway_id TEXT PRIMARY KEY,
  seq ${int} NOT NULL,
  updated_at ${int} NOT NULL
)${strict};
`,
    },
    {
      version: 2,
      name: 'console_logouts',
      sql: `
-- Logged-out console session ids, each kept until its session would have
-- expired (console/session.ts); the expiry index serves the purge.
CREATE TABLE console_logouts (
  sid TEXT PRIMARY KEY,
  expires_at ${int} NOT NULL
)${strict};
CREATE INDEX console_logouts_expires ON console_logouts (expires_at);
`,
    },
    {
      version: 3,
      name: 'revocation_lifts',
      sql: `
-- An agent, client or tenant revocation holds until an admin lifts it
-- (DELETE /admin/v1/revocations/{seq}): who lifted it, when, and the feed
-- seq the lift was published under. Entries of those types still in force
-- become permanent (9007199254740991 = REVOCATION_PERMANENT). The index
-- serves the token endpoint's list of standing entries among many jti ones.
ALTER TABLE revocations ADD COLUMN lifted_at ${int};
ALTER TABLE revocations ADD COLUMN lifted_by TEXT;
ALTER TABLE revocations ADD COLUMN lift_seq ${int};
UPDATE revocations SET expires_at = 9007199254740991
  WHERE type IN ('agent', 'client', 'tenant') AND expires_at > ${nowMs};
CREATE INDEX revocations_type ON revocations (type, expires_at);
`,
    },
    {
      version: 4,
      name: 'approvals_request',
      sql: `
-- Reverse-proxy approvals bind the forwarded request (method, path, query,
-- opaque body digest); null for other entry points.
ALTER TABLE approvals ADD COLUMN request_canonical TEXT;
`,
    },
    {
      version: 5,
      name: 'decision_log',
      sql: `
-- The decision log (docs/reference.md "Audit"): what every gateway decided, as it
-- uploaded it. Keyed by (ts, id): the gateway's decision time, then its
-- random id, so a retried upload is skipped (ON CONFLICT) and retention
-- deletes a prefix of the key. Every secondary index is equality columns
-- then (ts, id), so any filter of GET /admin/v1/decisions reads a page
-- newest first from an index without sorting; a filter with no index of
-- its own (agent and tool, tool and decision, …) walks the most selective
-- one in order. No token is stored, only its jti.
CREATE TABLE decisions (
  ts ${int} NOT NULL,
  id TEXT NOT NULL,
  received_at ${int} NOT NULL,
  gateway_id TEXT NOT NULL,
  type TEXT NOT NULL,
  mode TEXT NOT NULL,
  tenant TEXT,
  agent_id TEXT,
  client_id TEXT,
  jti TEXT,
  tool TEXT,
  resource TEXT,
  decision TEXT NOT NULL,
  enforced ${bool},
  reasons TEXT NOT NULL,
  policy_version TEXT,
  policy_ids TEXT,
  risk TEXT,
  degraded TEXT,
  error TEXT,
  latency_ms REAL,
  trace_id TEXT,
  params TEXT,
  PRIMARY KEY (ts, id)
)${strict};
CREATE INDEX decisions_tenant ON decisions (tenant, ts, id);
CREATE INDEX decisions_tenant_agent ON decisions (tenant, agent_id, ts, id);
CREATE INDEX decisions_tenant_tool ON decisions (tenant, tool, ts, id);
CREATE INDEX decisions_tenant_decision ON decisions (tenant, decision, ts, id);
`,
    },
    {
      version: 6,
      name: 'audit_tenant_type_index',
      sql: `
-- GET /admin/v1/audit?tenant=&type= (and the policy diff and auto-approval
-- readers, which always name both) reads one tenant's events of one type in
-- id order. With only (type, id) and (tenant, id), PostgreSQL combined the
-- two in a bitmap and sorted every match (133 ms at 500,000 events); this
-- index hands the page over in order, the cursor as part of the seek. The
-- other indexes stay: (type, id) and (tenant, id) serve the single filters
-- in order, (ts) the since filter. Built inside the migration's transaction,
-- so plain CREATE INDEX (CONCURRENTLY cannot run in a transaction): audit
-- writes wait while it builds, about 1.5 minutes per 10 million events. IF
-- NOT EXISTS lets an operator with a large log build it beforehand with
-- CREATE INDEX CONCURRENTLY under this name (README, "Audit").
CREATE INDEX IF NOT EXISTS audit_events_tenant_type ON audit_events (tenant, type, id);
`,
    },
    {
      version: 7,
      name: 'kpi_counts_audit_actor',
      sql: `
-- The console's KPIs, shared by every control plane on the database
-- (control-plane/admin/kpis.ts): counts per tenant ('' = all tenants), per
-- 10-second slot (epoch ms / 10000; 0 holds the all-time totals) and per
-- metric, each row added to by whichever control plane counted or received
-- something. History older than an hour is pruned by slot.
CREATE TABLE kpi_counts (
  tenant TEXT NOT NULL,
  slot ${int} NOT NULL,
  metric TEXT NOT NULL,
  n ${int} NOT NULL,
  PRIMARY KEY (tenant, slot, metric)
)${strict};
CREATE INDEX kpi_counts_slot ON kpi_counts (slot);
-- The console's agent page reads one agent's events newest first
-- (GET /admin/v1/audit?actor=agent:<tenant>/<agent>&order=desc).
CREATE INDEX audit_events_actor ON audit_events (actor, id);
`,
    },
    {
      version: 8,
      name: 'log_time_indexes',
      sql: `
-- Every filter of GET /admin/v1/audit and GET /admin/v1/decisions reads its
-- page in order from one index (docs/reference.md "Audit").
--
-- Audit with since: ts is each writer's own clock (one chain per control
-- plane), so ts >= since is no range of the id order; such a page is in
-- (ts, id) order instead, its cursor a (ts, id), and each filter has an
-- index of its equality columns then (ts, id). (ts, id) replaces (ts),
-- which ordered ties by their place in the table, not by id. An actor is
-- one agent or admin (its tenant is in its name); actor and type is the
-- console's agent page (token issuances).
DROP INDEX IF EXISTS audit_events_ts;
CREATE INDEX IF NOT EXISTS audit_events_ts_id ON audit_events (ts, id);
CREATE INDEX IF NOT EXISTS audit_events_type_ts ON audit_events (type, ts, id);
CREATE INDEX IF NOT EXISTS audit_events_tenant_ts ON audit_events (tenant, ts, id);
CREATE INDEX IF NOT EXISTS audit_events_tenant_type_ts ON audit_events (tenant, type, ts, id);
CREATE INDEX IF NOT EXISTS audit_events_actor_ts ON audit_events (actor, ts, id);
CREATE INDEX IF NOT EXISTS audit_events_actor_type ON audit_events (actor, type, id);
CREATE INDEX IF NOT EXISTS audit_events_actor_type_ts ON audit_events (actor, type, ts, id);
--
-- Decisions: every combination of the selective filters (tenant, agent,
-- tool) has an index of its own (migration 5 gave tenant, tenant + agent,
-- tenant + tool), as have decision alone and an agent's decisions of one
-- kind (the console's agent page); decision or enforced beside another
-- selective filter is read through that filter's index. Agent and tool
-- without a tenant are a global admin's filters across tenants.
CREATE INDEX IF NOT EXISTS decisions_agent ON decisions (agent_id, ts, id);
CREATE INDEX IF NOT EXISTS decisions_tool ON decisions (tool, ts, id);
CREATE INDEX IF NOT EXISTS decisions_agent_tool ON decisions (agent_id, tool, ts, id);
CREATE INDEX IF NOT EXISTS decisions_tenant_agent_tool ON decisions (tenant, agent_id, tool, ts, id);
CREATE INDEX IF NOT EXISTS decisions_decision ON decisions (decision, ts, id);
CREATE INDEX IF NOT EXISTS decisions_tenant_agent_decision ON decisions (tenant, agent_id, decision, ts, id);
`,
    },
    {
      version: 9,
      name: 'delegation',
      sql: `
-- Delegation (RFC 8693 actor tokens, docs/delegation.md): the agents each
-- agent may delegate to, the tenant's longest chain (NULL = the default),
-- and what a trusted issuer's people may be given when an agent acts for them.
ALTER TABLE agents ADD COLUMN delegates TEXT NOT NULL DEFAULT '[]';
ALTER TABLE tenants ADD COLUMN max_delegation_depth ${int};
ALTER TABLE trusted_issuers ADD COLUMN users TEXT;
`,
    },
    {
      version: 10,
      name: 'decisions_kind_indexes',
      sql: `
-- A global admin's agent or tool filter with a decision kind, across
-- tenants: through (agent_id, ts, id) alone a page of denials read about
-- ten times its rows (8.6 ms at 10 million decisions, README "Decision log").
CREATE INDEX IF NOT EXISTS decisions_agent_decision ON decisions (agent_id, decision, ts, id);
CREATE INDEX IF NOT EXISTS decisions_tool_decision ON decisions (tool, decision, ts, id);
`,
    },
    {
      version: 11,
      name: 'revocations_type_value',
      sql: `
-- Introspection and token exchange look up the entries that could cover
-- one token (RevocationRepo.listCovering) instead of reading every entry
-- in force: 100,000 jti entries made each exchange read 100,000 rows.
CREATE INDEX IF NOT EXISTS revocations_type_value ON revocations (type, value);
`,
    },
    {
      version: 12,
      name: 'decisions_kind_indexes_partial',
      sql: `
-- The five indexes that lead with a decision kind hold every kind but
-- allow: most decisions are allows, and each index a row goes into costs
-- its ingest (issue 20). An allow filter reads its page through the index
-- of its other filters, where most rows are allows; a kind other than allow
-- is rare, and there its own index saves reading past the allows. The
-- store's queries for another kind say decision <> 'allow' in so many
-- words, so both databases (and PostgreSQL's generic plans) use them.
-- Built inside the migration's transaction, as migration 6's index: an
-- operator with a large log can build them beforehand with CREATE INDEX
-- CONCURRENTLY under these names.
DROP INDEX IF EXISTS decisions_tenant_decision;
DROP INDEX IF EXISTS decisions_decision;
DROP INDEX IF EXISTS decisions_tenant_agent_decision;
DROP INDEX IF EXISTS decisions_agent_decision;
DROP INDEX IF EXISTS decisions_tool_decision;
CREATE INDEX IF NOT EXISTS decisions_tenant_kind ON decisions (tenant, decision, ts, id) WHERE decision <> 'allow';
CREATE INDEX IF NOT EXISTS decisions_kind ON decisions (decision, ts, id) WHERE decision <> 'allow';
CREATE INDEX IF NOT EXISTS decisions_tenant_agent_kind ON decisions (tenant, agent_id, decision, ts, id) WHERE decision <> 'allow';
CREATE INDEX IF NOT EXISTS decisions_agent_kind ON decisions (agent_id, decision, ts, id) WHERE decision <> 'allow';
CREATE INDEX IF NOT EXISTS decisions_tool_kind ON decisions (tool, decision, ts, id) WHERE decision <> 'allow';
`,
    },
    {
      version: 13,
      name: 'revocations_agent',
      sql: `
-- GET /admin/v1/revocations?tenant=&agent_id= (the console's agent page)
-- reads the entries naming one agent: its agent entry through (type, value),
-- and the issued_before entries scoped to it through this index. Only those
-- carry an agent_id, so the index stays small beside the jti entries.
CREATE INDEX IF NOT EXISTS revocations_agent ON revocations (tenant, agent_id) WHERE agent_id IS NOT NULL;
`,
    },
    {
      version: 14,
      name: 'policy_bundles_candidate',
      sql: `
-- The feed snapshot and summary carry each tenant's candidate bundle: they
-- read them in one statement through this index (candidates are few),
-- instead of every bundle of every tenant, one statement per tenant, at
-- each gateway's periodic check.
CREATE INDEX IF NOT EXISTS policy_bundles_candidate ON policy_bundles (tenant, created_at, id) WHERE status = 'candidate';
`,
    },
    {
      version: 15,
      name: 'audit_time_marks',
      sql: `
-- Audit pages with since are read in id order from the filter's own id-ordered
-- index, from a lower id bound taken from this sparse time index (the idea of
-- Kafka's time index, KIP-33): each mark says every event from first_id up to
-- the next mark has ts <= max_ts, and max_ts never decreases. Every append
-- adds a mark when its newest ts passes the last one (rounded up to the end
-- of its second, so about one mark per second), inside the append's
-- serialized transaction. The six (..., ts, id) indexes of migration 8, which
-- every audit event (one per token issued) had to be written into, go.
CREATE TABLE audit_time_marks (
  first_id ${int} PRIMARY KEY,
  max_ts ${int} NOT NULL
)${strict};
CREATE INDEX audit_time_marks_max_ts ON audit_time_marks (max_ts, first_id);
${AUDIT_TIME_MARKS_FROM_EVENTS}
DROP INDEX IF EXISTS audit_events_ts_id;
DROP INDEX IF EXISTS audit_events_type_ts;
DROP INDEX IF EXISTS audit_events_tenant_ts;
DROP INDEX IF EXISTS audit_events_tenant_type_ts;
DROP INDEX IF EXISTS audit_events_actor_ts;
DROP INDEX IF EXISTS audit_events_actor_type_ts;
`,
    },
  ]
}
