/**
 * Versioned schema of the PostgreSQL store, the same tables as the embedded
 * store. Table names are unqualified: the store lives in whatever schema the
 * connection's search_path names. Append new versions; never edit one that
 * has shipped.
 */
import type pg from 'pg'

export interface PgMigration {
  version: number
  name: string
  sql: string
}

export const POSTGRES_MIGRATIONS: readonly PgMigration[] = [
  {
    version: 1,
    name: 'initial',
    sql: `
CREATE TABLE tenants (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  require_attestation BOOLEAN NOT NULL,
  created_at BIGINT NOT NULL
);

CREATE TABLE agents (
  tenant TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  agent_id TEXT NOT NULL,
  client_id TEXT NOT NULL UNIQUE,
  scopes TEXT NOT NULL,
  capabilities TEXT NOT NULL,
  schemas TEXT,
  max_ttl_seconds BIGINT NOT NULL,
  audiences TEXT NOT NULL,
  token_endpoint_auth_method TEXT NOT NULL,
  jwks TEXT,
  tls_client_auth_subject_dn TEXT,
  tls_client_auth_san_uri TEXT,
  tls_client_auth_san_dns TEXT,
  tls_client_auth_thumbprint TEXT,
  capability_hash TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL,
  PRIMARY KEY (tenant, agent_id)
);

CREATE TABLE bootstrap_credentials (
  client_id TEXT PRIMARY KEY,
  tenant TEXT NOT NULL,
  agent_id TEXT NOT NULL,
  secret_hash TEXT NOT NULL,
  expires_at BIGINT NOT NULL,
  single_use BOOLEAN NOT NULL,
  used_at BIGINT,
  created_at BIGINT NOT NULL,
  FOREIGN KEY (tenant, agent_id) REFERENCES agents(tenant, agent_id) ON DELETE CASCADE
);
CREATE INDEX bootstrap_credentials_agent ON bootstrap_credentials (tenant, agent_id);

CREATE TABLE admin_tokens (
  id TEXT PRIMARY KEY,
  tenant TEXT,
  role TEXT NOT NULL,
  name TEXT NOT NULL,
  token_hash TEXT NOT NULL UNIQUE,
  linked_identities TEXT NOT NULL,
  groups_ TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  revoked_at BIGINT
);

CREATE TABLE manifests (
  hash TEXT PRIMARY KEY,
  manifest TEXT NOT NULL
);

CREATE TABLE signing_keys (
  kid TEXT PRIMARY KEY,
  alg TEXT NOT NULL,
  state TEXT NOT NULL,
  public_jwk TEXT NOT NULL,
  encrypted_private_key TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  activates_at BIGINT NOT NULL,
  deactivated_at BIGINT,
  retires_at BIGINT,
  revoked BOOLEAN NOT NULL
);

CREATE TABLE audit_events (
  id BIGSERIAL PRIMARY KEY,
  chain_id TEXT NOT NULL,
  chain_seq BIGINT NOT NULL,
  type TEXT NOT NULL,
  tenant TEXT,
  actor TEXT,
  subject TEXT,
  data TEXT NOT NULL,
  ts BIGINT NOT NULL,
  prev_hash TEXT NOT NULL,
  hash TEXT NOT NULL,
  UNIQUE (chain_id, chain_seq)
);
CREATE INDEX audit_events_type ON audit_events (type, id);
CREATE INDEX audit_events_tenant ON audit_events (tenant, id);
CREATE INDEX audit_events_ts ON audit_events (ts);

CREATE TABLE audit_checkpoints (
  chain_id TEXT NOT NULL,
  chain_seq BIGINT NOT NULL,
  head_hash TEXT NOT NULL,
  ts BIGINT NOT NULL,
  kid TEXT NOT NULL,
  signature TEXT NOT NULL,
  PRIMARY KEY (chain_id, chain_seq)
);

CREATE TABLE revocations (
  seq BIGSERIAL PRIMARY KEY,
  type TEXT NOT NULL,
  value TEXT NOT NULL,
  tenant TEXT,
  agent_id TEXT,
  reason TEXT,
  created_at BIGINT NOT NULL,
  expires_at BIGINT NOT NULL
);
CREATE INDEX revocations_expires ON revocations (expires_at);

CREATE TABLE policy_bundles (
  id TEXT PRIMARY KEY,
  tenant TEXT NOT NULL,
  version TEXT NOT NULL,
  cedar TEXT NOT NULL,
  mode TEXT NOT NULL,
  status TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  activated_at BIGINT,
  reviewed_at BIGINT,
  UNIQUE (tenant, version)
);
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
  require_console BOOLEAN NOT NULL,
  status TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  expires_at BIGINT NOT NULL,
  decided_at BIGINT,
  decided_by TEXT,
  reason TEXT,
  override_jti TEXT,
  deliveries TEXT NOT NULL
);
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
  created_at BIGINT NOT NULL
);
CREATE INDEX trusted_issuers_issuer ON trusted_issuers (issuer);
CREATE INDEX trusted_issuers_tenant ON trusted_issuers (tenant);

CREATE TABLE gateway_acks (
  gateway_id TEXT PRIMARY KEY,
  seq BIGINT NOT NULL,
  updated_at BIGINT NOT NULL
);
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
  expires_at BIGINT NOT NULL
);
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
ALTER TABLE revocations ADD COLUMN lifted_at BIGINT;
ALTER TABLE revocations ADD COLUMN lifted_by TEXT;
ALTER TABLE revocations ADD COLUMN lift_seq BIGINT;
UPDATE revocations SET expires_at = 9007199254740991
  WHERE type IN ('agent', 'client', 'tenant') AND expires_at > (extract(epoch FROM now()) * 1000)::bigint;
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
]

/**
 * First key of Aegis's two-key advisory locks. tryWithLock uses the one-key
 * (bigint) form, a separate key space, so the two never collide.
 */
export const LOCK_CLASS = 0x4145

/**
 * Applies every migration not yet recorded, each in its own transaction
 * under a transaction-scoped advisory lock, so control planes starting
 * together apply each version exactly once.
 */
export async function migratePostgres(client: pg.ClientBase, migrations: readonly PgMigration[] = POSTGRES_MIGRATIONS): Promise<number[]> {
  const applied: number[] = []
  for (const m of [...migrations].sort((a, b) => a.version - b.version)) {
    await client.query('BEGIN')
    try {
      await client.query("SELECT pg_advisory_xact_lock($1, hashtext('aegis.migrate.' || coalesce(current_schema(), '')))", [LOCK_CLASS])
      await client.query('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)')
      const done = await client.query('SELECT 1 FROM schema_migrations WHERE version = $1', [m.version])
      if (done.rowCount === 0) {
        await client.query(m.sql)
        await client.query('INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)', [m.version, m.name, Date.now()])
        applied.push(m.version)
      }
      await client.query('COMMIT')
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {})
      throw err
    }
  }
  return applied
}
