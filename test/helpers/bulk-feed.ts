/**
 * Fills a control plane's SQLite store with many live jti revocations and
 * agents at once (one transaction on a second connection; the store API
 * takes about a minute for 200,000 rows), for the feed scale test and bench.
 */
import Database from 'better-sqlite3'
import { join } from 'node:path'

export interface BulkFeedOptions {
  /** The control plane's data directory (its store is `<dataDir>/aegis.db`). */
  dataDir: string
  tenant: string
  revocations: number
  agents: number
  /** Prefix of the generated jti values and agent ids (unique per call). */
  prefix?: string
}

/** Inserts the rows; resolves with the time it took (ms). */
export function fillFeedState(opts: BulkFeedOptions): number {
  const started = performance.now()
  const db = new Database(join(opts.dataDir, 'aegis.db'))
  try {
    db.pragma('busy_timeout = 10000')
    const now = Date.now()
    const p = opts.prefix ?? 'bulk'
    // jti entries expire with the longest token they could match; an hour is plenty for a test.
    const rev = db.prepare('INSERT INTO revocations (type, value, tenant, agent_id, reason, created_at, expires_at) VALUES (?, ?, ?, NULL, ?, ?, ?)')
    const agent =
      db.prepare(`INSERT INTO agents (tenant, agent_id, client_id, scopes, capabilities, schemas, max_ttl_seconds, audiences, token_endpoint_auth_method,
      jwks, tls_client_auth_subject_dn, tls_client_auth_san_uri, tls_client_auth_san_dns, tls_client_auth_thumbprint, capability_hash, created_at, updated_at)
      VALUES (?, ?, ?, '["crm:read"]', '["crm.read"]', NULL, 900, '["aegis-gateway"]', 'client_secret_basic', NULL, NULL, NULL, NULL, NULL, ?, ?, ?)`)
    db.transaction(() => {
      for (let i = 0; i < opts.revocations; i++)
        rev.run('jti', `${p}-jti-${i.toString(36).padStart(8, '0')}-${'x'.repeat(12)}`, opts.tenant, 'bulk revocation for the scale test', now, now + 3_600_000)
      for (let i = 0; i < opts.agents; i++) agent.run(opts.tenant, `${p}-agent-${i}`, `ag_${p}_${i}`, 'A'.repeat(43), now, now)
    })()
  } finally {
    db.close()
  }
  return performance.now() - started
}
