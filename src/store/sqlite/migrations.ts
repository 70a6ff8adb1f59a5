/**
 * Versioned schema of the embedded store. Each migration runs once, in its
 * own transaction, recorded in `schema_migrations`. Append new versions;
 * never edit one that has shipped.
 */
import type Database from 'better-sqlite3'

export interface Migration {
  version: number
  name: string
  sql: string
}

export const SQLITE_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'initial',
    sql: `
CREATE TABLE tenants (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  require_attestation INTEGER NOT NULL,
  created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE agents (
  tenant TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  agent_id TEXT NOT NULL,
  client_id TEXT NOT NULL UNIQUE,
  scopes TEXT NOT NULL,
  capabilities TEXT NOT NULL,
  schemas TEXT,
  max_ttl_seconds INTEGER NOT NULL,
  audiences TEXT NOT NULL,
  token_endpoint_auth_method TEXT NOT NULL,
  jwks TEXT,
  tls_client_auth_subject_dn TEXT,
  tls_client_auth_san_uri TEXT,
  tls_client_auth_san_dns TEXT,
  tls_client_auth_thumbprint TEXT,
  capability_hash TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (tenant, agent_id)
) STRICT;

CREATE TABLE bootstrap_credentials (
  client_id TEXT PRIMARY KEY,
  tenant TEXT NOT NULL,
  agent_id TEXT NOT NULL,
  secret_hash TEXT NOT NULL,
  expires_at INTEGER NOT NULL,
  single_use INTEGER NOT NULL,
  used_at INTEGER,
  created_at INTEGER NOT NULL,
  FOREIGN KEY (tenant, agent_id) REFERENCES agents(tenant, agent_id) ON DELETE CASCADE
) STRICT;
CREATE INDEX bootstrap_credentials_agent ON bootstrap_credentials (tenant, agent_id);

CREATE TABLE admin_tokens (
  id TEXT PRIMARY KEY,
  tenant TEXT,
  role TEXT NOT NULL,
  name TEXT NOT NULL,
  token_hash TEXT NOT NULL UNIQUE,
  linked_identities TEXT NOT NULL,
  groups_ TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  revoked_at INTEGER
) STRICT;

CREATE TABLE manifests (
  hash TEXT PRIMARY KEY,
  manifest TEXT NOT NULL
) STRICT;

CREATE TABLE signing_keys (
  kid TEXT PRIMARY KEY,
  alg TEXT NOT NULL,
  state TEXT NOT NULL,
  public_jwk TEXT NOT NULL,
  encrypted_private_key TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  activates_at INTEGER NOT NULL,
  deactivated_at INTEGER,
  retires_at INTEGER,
  revoked INTEGER NOT NULL
) STRICT;

CREATE TABLE audit_events (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  chain_id TEXT NOT NULL,
  chain_seq INTEGER NOT NULL,
  type TEXT NOT NULL,
  tenant TEXT,
  actor TEXT,
  subject TEXT,
  data TEXT NOT NULL,
  ts INTEGER NOT NULL,
  prev_hash TEXT NOT NULL,
  hash TEXT NOT NULL,
  UNIQUE (chain_id, chain_seq)
) STRICT;
CREATE INDEX audit_events_type ON audit_events (type, id);
CREATE INDEX audit_events_tenant ON audit_events (tenant, id);
CREATE INDEX audit_events_ts ON audit_events (ts);

CREATE TABLE audit_checkpoints (
  chain_id TEXT NOT NULL,
  chain_seq INTEGER NOT NULL,
  head_hash TEXT NOT NULL,
  ts INTEGER NOT NULL,
  kid TEXT NOT NULL,
  signature TEXT NOT NULL,
  PRIMARY KEY (chain_id, chain_seq)
) STRICT;

-- AUTOINCREMENT: a purged seq is never handed out again, so the feed's
-- sequence stays strictly increasing.
CREATE TABLE revocations (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  type TEXT NOT NULL,
  value TEXT NOT NULL,
  tenant TEXT,
  agent_id TEXT,
  reason TEXT,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL
) STRICT;
CREATE INDEX revocations_expires ON revocations (expires_at);

CREATE TABLE policy_bundles (
  id TEXT PRIMARY KEY,
  tenant TEXT NOT NULL,
  version TEXT NOT NULL,
  cedar TEXT NOT NULL,
  mode TEXT NOT NULL,
  status TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  activated_at INTEGER,
  reviewed_at INTEGER,
  UNIQUE (tenant, version)
) STRICT;
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
  require_console INTEGER NOT NULL,
  status TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  decided_at INTEGER,
  decided_by TEXT,
  reason TEXT,
  override_jti TEXT,
  deliveries TEXT NOT NULL
) STRICT;
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
  created_at INTEGER NOT NULL
) STRICT;
CREATE INDEX trusted_issuers_issuer ON trusted_issuers (issuer);
CREATE INDEX trusted_issuers_tenant ON trusted_issuers (tenant);

CREATE TABLE gateway_acks (
  gateway_id TEXT PRIMARY KEY,
  seq INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
) STRICT;
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
  expires_at INTEGER NOT NULL
) STRICT;
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
ALTER TABLE revocations ADD COLUMN lifted_at INTEGER;
ALTER TABLE revocations ADD COLUMN lifted_by TEXT;
ALTER TABLE revocations ADD COLUMN lift_seq INTEGER;
UPDATE revocations SET expires_at = 9007199254740991
  WHERE type IN ('agent', 'client', 'tenant') AND expires_at > CAST(strftime('%s', 'now') AS INTEGER) * 1000;
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
 * Applies every migration not yet recorded. BEGIN IMMEDIATE takes the write
 * lock first, so two processes opening the same file apply each version once.
 */
export function migrateSqlite(db: Database.Database, migrations: readonly Migration[] = SQLITE_MIGRATIONS): number[] {
  db.exec('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)')
  const applied: number[] = []
  const has = db.prepare<[number], { version: number }>('SELECT version FROM schema_migrations WHERE version = ?')
  const record = db.prepare<[number, string, number]>('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)')
  for (const m of [...migrations].sort((a, b) => a.version - b.version)) {
    db.transaction(() => {
      if (has.get(m.version)) return
      db.exec(m.sql)
      record.run(m.version, m.name, Date.now())
      applied.push(m.version)
    }).immediate()
  }
  return applied
}
