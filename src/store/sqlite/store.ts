/**
 * Embedded store: one SQLite file (better-sqlite3, WAL). Every method does
 * its work synchronously inside and resolves a Promise, so callers see the
 * same interface as the PostgreSQL store. Statements are prepared once and
 * cached by their SQL text.
 */
import { randomUUID } from 'node:crypto'
import { startCheckpointer, type Checkpointer } from './checkpointer.js'
import { closeSync, openSync } from 'node:fs'
import { resolve } from 'node:path'
import Database from 'better-sqlite3'
import { NotFound } from '../../errors.js'
import * as T from '../sql/rows.js'
import { definedOnly, sqlLimit, storeError, type Row } from '../sql/rows.js'
import type {
  AdminToken, AdminTokenRepo, Agent, AgentPatch, AgentRepo, Approval, ApprovalDelivery, ApprovalRepo,
  ApprovalStatus, AuditCheckpoint, AuditEvent, AuditQuery, AuditRepo, BootstrapCredential, ConsoleLogoutRepo, CredentialRepo,
  GatewayAck, GatewayAckRepo, KeyRepo, ManifestRepo, PolicyBundle, PolicyRepo, Revocation, RevocationRepo,
  SigningKey, Store, Tenant, TenantRepo, TrustedIssuer, TrustedIssuerRepo,
} from '../types.js'
import { migrateSqlite } from './migrations.js'

type Params = unknown[]

/** Rows per multi-row audit INSERT (10 columns each, far below SQLite's 32766 parameters). */
const AUDIT_ROWS_PER_INSERT = 32

/** Names held by tryWithLock in this process, keyed by database file and name. */
const HELD = new Set<string>()

function insertSql(t: { table: string; columns: readonly string[] }): string {
  return `INSERT INTO ${t.table} (${t.columns.join(', ')}) VALUES (${t.columns.map(() => '?').join(', ')})`
}

/** Options of {@link openSqliteStore}. */
export interface SqliteStoreOptions {
  /** How long a writer waits for another process's write lock (ms). Default 5000. */
  busyTimeoutMs?: number
}

/** The embedded store. Construct with {@link openSqliteStore}. */
const CHECKPOINT_INTERVAL_MS = 50

export class SqliteStore implements Store {
  readonly kind = 'sqlite' as const
  readonly tenants: TenantRepo
  readonly agents: AgentRepo
  readonly credentials: CredentialRepo
  readonly adminTokens: AdminTokenRepo
  readonly manifests: ManifestRepo
  readonly keys: KeyRepo
  readonly audit: AuditRepo
  readonly revocations: RevocationRepo
  readonly policies: PolicyRepo
  readonly approvals: ApprovalRepo
  readonly trustedIssuers: TrustedIssuerRepo
  readonly gatewayAcks: GatewayAckRepo
  readonly consoleLogouts: ConsoleLogoutRepo

  private readonly db: Database.Database
  private readonly stmts = new Map<string, Database.Statement>()
  private readonly lockKey: string
  private closed = false
  private checkpointTimer: NodeJS.Timeout | null = null
  private checkpointer: Checkpointer | null = null
  private readonly path: string | null

  constructor(path: string, opts: SqliteStoreOptions = {}) {
    const memory = path === ':memory:' || path === ''
    this.lockKey = memory ? `mem:${randomUUID()}` : resolve(path)
    let db: Database.Database | undefined
    try {
      // The file holds key material (encrypted) and secret hashes: create it
      // owner-only; SQLite gives its -wal and -shm files the same mode.
      if (!memory) closeSync(openSync(path, 'a', 0o600))
      db = new Database(path)
      db.pragma('journal_mode = WAL')
      // NORMAL under WAL: a commit survives a process crash; only an OS crash
      // or power loss can drop the last transactions, never corrupt the file.
      db.pragma('synchronous = NORMAL')
      db.pragma(`busy_timeout = ${Math.max(0, Math.floor(opts.busyTimeoutMs ?? 5000))}`)
      db.pragma('foreign_keys = ON')
      migrateSqlite(db)
      if (!memory) {
        // Checkpoints run every 50 ms (small, frequent ones; startCheckpoints) instead of inside whichever commit
        // crosses the 1000-page mark: an automatic checkpoint stalls that commit
        // (and every token waiting on its audit batch) for tens of ms, the
        // issuance p99. journal_size_limit bounds the WAL file between them.
        db.pragma('wal_autocheckpoint = 0')
        db.pragma('journal_size_limit = 33554432')
      }
    } catch (err) {
      try { db?.close() } catch { /* already failing; report the first error */ }
      throw storeError(err, 'database')
    }
    this.db = db
    this.path = memory ? null : path
    this.tenants = this.tenantRepo()
    this.agents = this.agentRepo()
    this.credentials = this.credentialRepo()
    this.adminTokens = this.adminTokenRepo()
    this.manifests = this.manifestRepo()
    this.keys = this.keyRepo()
    this.audit = this.auditRepo()
    this.revocations = this.revocationRepo()
    this.policies = this.policyRepo()
    this.approvals = this.approvalRepo()
    this.trustedIssuers = this.trustedIssuerRepo()
    this.gatewayAcks = this.gatewayAckRepo()
    this.consoleLogouts = this.consoleLogoutRepo()
  }

  private st(sql: string): Database.Statement {
    let s = this.stmts.get(sql)
    if (!s) {
      s = this.db.prepare(sql)
      this.stmts.set(sql, s)
    }
    return s
  }

  private all<R>(sql: string, params: Params, map: (r: Row) => R): R[] {
    return (this.st(sql).all(...params) as Row[]).map(map)
  }

  private one<R>(sql: string, params: Params, map: (r: Row) => R): R | null {
    const r = this.st(sql).get(...params) as Row | undefined
    return r === undefined ? null : map(r)
  }

  private run(sql: string, params: Params): Database.RunResult {
    return this.st(sql).run(...params)
  }

  /** Runs synchronous work and turns any driver error into ours. */
  private async w<R>(what: string, fn: () => R): Promise<R> {
    try {
      return fn()
    } catch (err) {
      throw storeError(err, what)
    }
  }

  private tx<R>(fn: () => R): R {
    return this.db.transaction(fn).immediate()
  }

  private tenantRepo(): TenantRepo {
    const get = (id: string): Tenant | null => this.one('SELECT * FROM tenants WHERE id = ?', [id], T.tenants.fromRow)
    return {
      create: (t) => this.w('tenant', () => { this.run(insertSql(T.tenants), T.tenants.toParams(t)) }),
      get: (id) => this.w('tenant', () => get(id)),
      list: () => this.w('tenant', () => this.all('SELECT * FROM tenants ORDER BY created_at, id', [], T.tenants.fromRow)),
      update: (id, patch) => this.w('tenant', () => this.tx(() => {
        const cur = get(id)
        if (!cur) throw new NotFound('tenant not found')
        const next: Tenant = { ...cur, ...definedOnly(patch), id: cur.id, createdAt: cur.createdAt }
        this.run('UPDATE tenants SET name = ?, require_attestation = ? WHERE id = ?', [next.name, next.requireAttestation ? 1 : 0, id])
        return next
      })),
      delete: (id) => this.w('tenant', () => {
        if (this.run('DELETE FROM tenants WHERE id = ?', [id]).changes === 0) throw new NotFound('tenant not found')
      }),
    }
  }

  private agentRepo(): AgentRepo {
    const get = (tenant: string, agentId: string): Agent | null =>
      this.one('SELECT * FROM agents WHERE tenant = ? AND agent_id = ?', [tenant, agentId], T.agents.fromRow)
    const setCols = T.agents.columns.map((c) => `${c} = ?`).join(', ')
    return {
      create: (a) => this.w('agent', () => { this.run(insertSql(T.agents), T.agents.toParams(a)) }),
      get: (tenant, agentId) => this.w('agent', () => get(tenant, agentId)),
      getByClientId: (clientId) => this.w('agent', () => this.one('SELECT * FROM agents WHERE client_id = ?', [clientId], T.agents.fromRow)),
      list: (tenant) => this.w('agent', () => this.all('SELECT * FROM agents WHERE tenant = ? ORDER BY agent_id', [tenant], T.agents.fromRow)),
      listAll: () => this.w('agent', () => this.all('SELECT * FROM agents ORDER BY tenant, agent_id', [], T.agents.fromRow)),
      listHashesPage: (after, limit) => this.w('agent', () => after
        ? this.all('SELECT tenant, agent_id, capability_hash FROM agents WHERE (tenant, agent_id) > (?, ?) ORDER BY tenant, agent_id LIMIT ?', [after.tenant, after.agentId, limit], T.agentHash)
        : this.all('SELECT tenant, agent_id, capability_hash FROM agents ORDER BY tenant, agent_id LIMIT ?', [limit], T.agentHash)),
      update: (tenant, agentId, patch: AgentPatch, updatedAt) => this.w('agent', () => this.tx(() => {
        const cur = get(tenant, agentId)
        if (!cur) throw new NotFound('agent not found')
        const next: Agent = {
          ...cur, ...definedOnly(patch),
          tenant: cur.tenant, agentId: cur.agentId, clientId: cur.clientId, createdAt: cur.createdAt, updatedAt,
        }
        this.run(`UPDATE agents SET ${setCols} WHERE tenant = ? AND agent_id = ?`, [...T.agents.toParams(next), tenant, agentId])
        return next
      })),
      delete: (tenant, agentId) => this.w('agent', () => {
        if (this.run('DELETE FROM agents WHERE tenant = ? AND agent_id = ?', [tenant, agentId]).changes === 0) throw new NotFound('agent not found')
      }),
    }
  }

  private credentialRepo(): CredentialRepo {
    return {
      create: (c: BootstrapCredential) => this.w('credential', () => { this.run(insertSql(T.credentials), T.credentials.toParams(c)) }),
      get: (clientId) => this.w('credential', () => this.one('SELECT * FROM bootstrap_credentials WHERE client_id = ?', [clientId], T.credentials.fromRow)),
      consume: (clientId, at) => this.w('credential', () =>
        this.run('UPDATE bootstrap_credentials SET used_at = ? WHERE client_id = ? AND used_at IS NULL', [at, clientId]).changes === 1),
      deleteForAgent: (tenant, agentId) => this.w('credential', () => {
        this.run('DELETE FROM bootstrap_credentials WHERE tenant = ? AND agent_id = ?', [tenant, agentId])
      }),
    }
  }

  private adminTokenRepo(): AdminTokenRepo {
    return {
      create: (t: AdminToken) => this.w('admin token', () => { this.run(insertSql(T.adminTokens), T.adminTokens.toParams(t)) }),
      getByHash: (h) => this.w('admin token', () => this.one('SELECT * FROM admin_tokens WHERE token_hash = ?', [h], T.adminTokens.fromRow)),
      get: (id) => this.w('admin token', () => this.one('SELECT * FROM admin_tokens WHERE id = ?', [id], T.adminTokens.fromRow)),
      list: (tenant) => this.w('admin token', () => {
        if (tenant === undefined) return this.all('SELECT * FROM admin_tokens ORDER BY created_at, id', [], T.adminTokens.fromRow)
        if (tenant === null) return this.all('SELECT * FROM admin_tokens WHERE tenant IS NULL ORDER BY created_at, id', [], T.adminTokens.fromRow)
        return this.all('SELECT * FROM admin_tokens WHERE tenant = ? ORDER BY created_at, id', [tenant], T.adminTokens.fromRow)
      }),
      revoke: (id, at) => this.w('admin token', () => {
        if (this.run('UPDATE admin_tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?', [at, id]).changes === 0) throw new NotFound('admin token not found')
      }),
    }
  }

  private manifestRepo(): ManifestRepo {
    return {
      put: (hash, manifest) => this.w('manifest', () => {
        this.run('INSERT INTO manifests (hash, manifest) VALUES (?, ?) ON CONFLICT (hash) DO NOTHING', [hash, JSON.stringify(manifest)])
      }),
      get: (hash) => this.w('manifest', () => this.one('SELECT manifest FROM manifests WHERE hash = ?', [hash], (r) => JSON.parse(String(r.manifest)) as unknown)),
    }
  }

  private keyRepo(): KeyRepo {
    const setCols = T.signingKeys.columns.map((c) => `${c} = ?`).join(', ')
    return {
      list: () => this.w('key', () => this.all('SELECT * FROM signing_keys ORDER BY created_at, kid', [], T.signingKeys.fromRow)),
      insert: (k: SigningKey) => this.w('key', () => { this.run(insertSql(T.signingKeys), T.signingKeys.toParams(k)) }),
      update: (kid, patch) => this.w('key', () => this.tx(() => {
        const cur = this.one('SELECT * FROM signing_keys WHERE kid = ?', [kid], T.signingKeys.fromRow)
        if (!cur) throw new NotFound('key not found')
        const next: SigningKey = { ...cur, ...definedOnly(patch), kid: cur.kid }
        this.run(`UPDATE signing_keys SET ${setCols} WHERE kid = ?`, [...T.signingKeys.toParams(next), kid])
      })),
    }
  }

  private auditRepo(): AuditRepo {
    // Hot path (every token issuance): a group-committed batch is written as
    // multi-row INSERTs of up to AUDIT_ROWS_PER_INSERT rows in one transaction
    // (one statement call per chunk instead of per row). Statements are
    // prepared once per chunk size, so at most AUDIT_ROWS_PER_INSERT exist.
    const inserts: Database.Statement[] = []
    const insertOf = (rows: number): Database.Statement => {
      let s = inserts[rows]
      if (!s) {
        const one = `(${T.auditEvents.columns.map(() => '?').join(', ')})`
        s = this.db.prepare(`INSERT INTO ${T.auditEvents.table} (${T.auditEvents.columns.join(', ')}) VALUES ${Array.from({ length: rows }, () => one).join(', ')}`)
        inserts[rows] = s
      }
      return s
    }
    const appendTx = this.db.transaction((events: Omit<AuditEvent, 'id'>[]): number[] => {
      const ids = new Array<number>(events.length)
      for (let at = 0; at < events.length; at += AUDIT_ROWS_PER_INSERT) {
        const n = Math.min(AUDIT_ROWS_PER_INSERT, events.length - at)
        const params: unknown[] = []
        for (let i = at; i < at + n; i++) {
          for (const v of T.auditEvents.toParams(events[i]!)) params.push(v)
        }
        // AUTOINCREMENT inside this write transaction hands one INSERT's rows consecutive ids.
        const last = Number(insertOf(n).run(params).lastInsertRowid)
        for (let i = 0; i < n; i++) ids[at + i] = last - n + 1 + i
      }
      return ids
    })
    return {
      append: (events) => this.w('audit event', () => (events.length === 0 ? [] : appendTx.immediate(events))),
      head: (chainId) => this.w('audit event', () =>
        this.one('SELECT * FROM audit_events WHERE chain_id = ? ORDER BY chain_seq DESC LIMIT 1', [chainId], T.auditEvents.fromRow)),
      query: (q: AuditQuery) => this.w('audit event', () => {
        const where: string[] = []
        const params: Params = []
        if (q.type !== undefined) { where.push('type = ?'); params.push(q.type) }
        if (q.tenant !== undefined) { where.push('tenant = ?'); params.push(q.tenant) }
        if (q.since !== undefined) { where.push('ts >= ?'); params.push(q.since) }
        if (q.cursor !== undefined) { where.push('id > ?'); params.push(q.cursor) }
        params.push(sqlLimit(q.limit))
        const sql = `SELECT * FROM audit_events${where.length ? ' WHERE ' + where.join(' AND ') : ''} ORDER BY id LIMIT ?`
        return this.all(sql, params, T.auditEvents.withId)
      }),
      chains: () => this.w('audit event', () => this.all('SELECT DISTINCT chain_id FROM audit_events ORDER BY chain_id', [], (r) => String(r.chain_id))),
      chain: (chainId, afterSeq, limit) => this.w('audit event', () =>
        this.all('SELECT * FROM audit_events WHERE chain_id = ? AND chain_seq > ? ORDER BY chain_seq LIMIT ?',
          [chainId, afterSeq, sqlLimit(limit)], T.auditEvents.withId)),
      putCheckpoint: (c: AuditCheckpoint) => this.w('audit checkpoint', () => {
        this.run(`${insertSql(T.auditCheckpoints)} ON CONFLICT (chain_id, chain_seq) DO UPDATE SET
          head_hash = excluded.head_hash, ts = excluded.ts, kid = excluded.kid, signature = excluded.signature`, T.auditCheckpoints.toParams(c))
      }),
      latestCheckpoints: () => this.w('audit checkpoint', () => this.all(
        `SELECT c.* FROM audit_checkpoints c
           JOIN (SELECT chain_id, MAX(chain_seq) AS m FROM audit_checkpoints GROUP BY chain_id) x
             ON c.chain_id = x.chain_id AND c.chain_seq = x.m
         ORDER BY c.chain_id`, [], T.auditCheckpoints.fromRow)),
      checkpoints: (chainId, afterSeq, limit) => this.w('audit checkpoint', () =>
        this.all('SELECT * FROM audit_checkpoints WHERE chain_id = ? AND chain_seq > ? ORDER BY chain_seq LIMIT ?',
          [chainId, afterSeq, sqlLimit(limit)], T.auditCheckpoints.fromRow)),
    }
  }

  private revocationRepo(): RevocationRepo {
    return {
      add: (r: Omit<Revocation, 'seq'>) => this.w('revocation', () =>
        this.one(`${insertSql(T.revocations)} RETURNING *`, T.revocations.toParams(r), T.revocations.withSeq) as Revocation),
      listActive: (now) => this.w('revocation', () => this.all('SELECT * FROM revocations WHERE expires_at > ? AND lifted_at IS NULL ORDER BY seq', [now], T.revocations.withSeq)),
      listActivePage: (now, afterSeq, limit) => this.w('revocation', () => this.all('SELECT * FROM revocations WHERE seq > ? AND expires_at > ? AND lifted_at IS NULL ORDER BY seq LIMIT ?', [afterSeq, now, limit], T.revocations.withSeq)),
      listStanding: (now) => this.w('revocation', () => this.all(
        "SELECT * FROM revocations WHERE type IN ('agent', 'client', 'tenant') AND expires_at > ? AND lifted_at IS NULL ORDER BY seq", [now], T.revocations.withSeq)),
      lift: (seq, at, by) => this.w('revocation', () => this.tx(() => {
        const cur = this.one('SELECT * FROM revocations WHERE seq = ? AND expires_at > ? AND lifted_at IS NULL', [seq, at], T.revocations.withSeq)
        if (!cur) return null
        // The lift takes the next value of the seq sequence, so gateways and acks see it as one more change in order.
        const liftSeq = this.one("UPDATE sqlite_sequence SET seq = seq + 1 WHERE name = 'revocations' RETURNING seq", [], (r) => Number(r.seq)) as number
        this.run('UPDATE revocations SET lifted_at = ?, lifted_by = ?, lift_seq = ?, expires_at = ? WHERE seq = ?', [at, by, liftSeq, at, seq])
        return { ...cur, expiresAt: at, liftedAt: at, liftedBy: by, liftSeq }
      })),
      since: (afterSeq) => this.w('revocation', () => this.all('SELECT * FROM revocations WHERE seq > ? ORDER BY seq', [afterSeq], T.revocations.withSeq)),
      get: (seq) => this.w('revocation', () => this.one('SELECT * FROM revocations WHERE seq = ?', [seq], T.revocations.withSeq)),
      // sqlite_sequence keeps the highest seq ever assigned, even after a purge.
      lastSeq: () => this.w('revocation', () =>
        this.one("SELECT seq FROM sqlite_sequence WHERE name = 'revocations'", [], (r) => Number(r.seq)) ?? 0),
      purgeExpired: (now) => this.w('revocation', () => this.run('DELETE FROM revocations WHERE expires_at <= ?', [now]).changes),
    }
  }

  private policyRepo(): PolicyRepo {
    const get = (tenant: string, id: string): PolicyBundle | null =>
      this.one('SELECT * FROM policy_bundles WHERE tenant = ? AND id = ?', [tenant, id], T.policies.fromRow)
    return {
      create: (p) => this.w('policy bundle', () => { this.run(insertSql(T.policies), T.policies.toParams(p)) }),
      get: (tenant, id) => this.w('policy bundle', () => get(tenant, id)),
      list: (tenant) => this.w('policy bundle', () => this.all('SELECT * FROM policy_bundles WHERE tenant = ? ORDER BY created_at, id', [tenant], T.policies.fromRow)),
      listActive: () => this.w('policy bundle', () => this.all("SELECT * FROM policy_bundles WHERE status = 'active' ORDER BY tenant", [], T.policies.fromRow)),
      activate: (tenant, id, at) => this.w('policy bundle', () => this.tx(() => {
        if (!get(tenant, id)) throw new NotFound('policy bundle not found')
        this.run("UPDATE policy_bundles SET status = 'inactive' WHERE tenant = ? AND status = 'active' AND id <> ?", [tenant, id])
        this.run("UPDATE policy_bundles SET status = 'active', activated_at = ? WHERE tenant = ? AND id = ?", [at, tenant, id])
        return get(tenant, id) as PolicyBundle
      })),
      update: (tenant, id, patch) => this.w('policy bundle', () => this.tx(() => {
        const cur = get(tenant, id)
        if (!cur) throw new NotFound('policy bundle not found')
        const next: PolicyBundle = { ...cur, ...definedOnly(patch) }
        this.run('UPDATE policy_bundles SET status = ?, mode = ?, reviewed_at = ? WHERE tenant = ? AND id = ?',
          [next.status, next.mode, next.reviewedAt, tenant, id])
        return next
      })),
    }
  }

  private approvalRepo(): ApprovalRepo {
    return {
      create: (a: Approval) => this.w('approval', () => { this.run(insertSql(T.approvals), T.approvals.toParams(a)) }),
      get: (id) => this.w('approval', () => this.one('SELECT * FROM approvals WHERE id = ?', [id], T.approvals.fromRow)),
      findOpen: (tenant, agentId, tool, paramsHash, now) => this.w('approval', () => this.one(
        `SELECT * FROM approvals WHERE tenant = ? AND agent_id = ? AND tool = ? AND params_hash = ?
           AND status = 'pending' AND expires_at > ? ORDER BY created_at DESC, id LIMIT 1`,
        [tenant, agentId, tool, paramsHash, now], T.approvals.fromRow)),
      list: (f: { tenant?: string; status?: ApprovalStatus; limit: number }) => this.w('approval', () => {
        const where: string[] = []
        const params: Params = []
        if (f.tenant !== undefined) { where.push('tenant = ?'); params.push(f.tenant) }
        if (f.status !== undefined) { where.push('status = ?'); params.push(f.status) }
        params.push(sqlLimit(f.limit))
        return this.all(`SELECT * FROM approvals${where.length ? ' WHERE ' + where.join(' AND ') : ''} ORDER BY created_at DESC, id LIMIT ?`,
          params, T.approvals.fromRow)
      }),
      countOpen: (f) => this.w('approval', () => {
        const sql = `SELECT COUNT(*) AS n FROM approvals WHERE tenant = ?${f.agentId !== undefined ? ' AND agent_id = ?' : ''}
          AND status = 'pending' AND expires_at > ?`
        const params: Params = f.agentId !== undefined ? [f.tenant, f.agentId, f.now] : [f.tenant, f.now]
        return this.one(sql, params, (r) => Number(r.n)) ?? 0
      }),
      decide: (id, d) => this.w('approval', () => this.one(
        `UPDATE approvals SET status = ?, decided_by = ?, reason = ?, decided_at = ?, override_jti = ?
          WHERE id = ? AND status = 'pending' AND expires_at > ? RETURNING *`,
        [d.status, d.decidedBy, d.reason, d.decidedAt, d.overrideJti, id, d.decidedAt], T.approvals.fromRow)),
      setDeliveries: (id, deliveries: ApprovalDelivery[]) => this.w('approval', () => {
        if (this.run('UPDATE approvals SET deliveries = ? WHERE id = ?', [JSON.stringify(deliveries), id]).changes === 0) throw new NotFound('approval not found')
      }),
      expire: (now) => this.w('approval', () => this.all(
        "UPDATE approvals SET status = 'expired' WHERE status = 'pending' AND expires_at <= ? RETURNING *", [now], T.approvals.fromRow)
        .sort((a, b) => a.createdAt - b.createdAt || a.id.localeCompare(b.id))),
    }
  }

  private trustedIssuerRepo(): TrustedIssuerRepo {
    return {
      create: (t: TrustedIssuer) => this.w('trusted issuer', () => { this.run(insertSql(T.trustedIssuers), T.trustedIssuers.toParams(t)) }),
      list: (tenant) => this.w('trusted issuer', () => this.all('SELECT * FROM trusted_issuers WHERE tenant = ? ORDER BY created_at, id', [tenant], T.trustedIssuers.fromRow)),
      findByIssuer: (issuer) => this.w('trusted issuer', () => this.all('SELECT * FROM trusted_issuers WHERE issuer = ? ORDER BY tenant, id', [issuer], T.trustedIssuers.fromRow)),
      delete: (tenant, id) => this.w('trusted issuer', () => {
        if (this.run('DELETE FROM trusted_issuers WHERE tenant = ? AND id = ?', [tenant, id]).changes === 0) throw new NotFound('trusted issuer not found')
      }),
    }
  }

  private gatewayAckRepo(): GatewayAckRepo {
    return {
      put: (a: GatewayAck) => this.w('gateway ack', () => {
        this.run(`${insertSql(T.gatewayAcks)} ON CONFLICT (gateway_id) DO UPDATE SET seq = excluded.seq, updated_at = excluded.updated_at`, T.gatewayAcks.toParams(a))
      }),
      list: () => this.w('gateway ack', () => this.all('SELECT * FROM gateway_acks ORDER BY gateway_id', [], T.gatewayAcks.fromRow)),
    }
  }

  private consoleLogoutRepo(): ConsoleLogoutRepo {
    return {
      // DO NOTHING: two logouts racing with the same cookie both succeed.
      add: (sid, expiresAt) => this.w('console logout', () => {
        this.run('INSERT INTO console_logouts (sid, expires_at) VALUES (?, ?) ON CONFLICT (sid) DO NOTHING', [sid, expiresAt])
      }),
      has: (sid) => this.w('console logout', () => this.one('SELECT 1 AS x FROM console_logouts WHERE sid = ?', [sid], () => true) ?? false),
      purgeExpired: (now) => this.w('console logout', () => this.run('DELETE FROM console_logouts WHERE expires_at <= ?', [now]).changes),
    }
  }

  /** In-process mutex per database file and name: the embedded store has one process. */
  async tryWithLock<R>(name: string, fn: () => Promise<R>): Promise<{ ran: true; value: R } | { ran: false }> {
    const key = `${this.lockKey}\u0000${name}`
    if (HELD.has(key)) return { ran: false }
    HELD.add(key)
    try {
      return { ran: true, value: await fn() }
    } finally {
      HELD.delete(key)
    }
  }

  /**
   * Starts WAL checkpoints every 50 ms (small, frequent ones; see the
   * constructor): on a worker thread with its own connection, or, if that
   * cannot start, from a timer on this thread.
   */
  async startCheckpoints(): Promise<void> {
    if (this.path === null || this.checkpointer !== null || this.checkpointTimer !== null) return
    try {
      this.checkpointer = await startCheckpointer(this.path, CHECKPOINT_INTERVAL_MS)
    } catch {
      const db = this.db
      this.checkpointTimer = setInterval(() => {
        try { db.pragma('wal_checkpoint(PASSIVE)') } catch { /* busy or closing: the next tick retries */ }
      }, CHECKPOINT_INTERVAL_MS)
      this.checkpointTimer.unref()
    }
  }

  /** True when checkpoints run on the worker thread (tests). */
  get checkpointsOffThread(): boolean {
    return this.checkpointer !== null
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    if (this.checkpointTimer) clearInterval(this.checkpointTimer)
    // The worker's connection closes first, so this one is the last and SQLite folds the WAL back on close.
    if (this.checkpointer) await this.checkpointer.close().catch(() => {})
    this.stmts.clear()
    try {
      this.db.close()
    } catch (err) {
      throw storeError(err, 'database')
    }
  }
}

/**
 * Opens (creating if needed) the SQLite store at `path` and applies pending
 * migrations. `:memory:` gives a private in-memory database.
 */
export async function openSqliteStore(path: string, opts: SqliteStoreOptions = {}): Promise<Store> {
  const store = new SqliteStore(path, opts)
  await store.startCheckpoints()
  return store
}
