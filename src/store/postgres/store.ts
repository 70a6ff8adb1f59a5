/**
 * PostgreSQL store for scale-out: several control planes share one database.
 * Table names are unqualified, so the store lives in whatever schema the
 * connection's search_path names. Statements are named (prepared once per
 * connection by pg). Every guarantee that must hold across control planes is
 * made by the database: single statements with conditions (consume, decide),
 * unique indexes, and advisory locks.
 */
import { createHash } from 'node:crypto'
import pg from 'pg'
import { NotFound } from '../../errors.js'
import type { Logger } from '../../observability/logger.js'
import * as T from '../sql/rows.js'
import { definedOnly, sqlLimit, storeError, type Row } from '../sql/rows.js'
import type {
  AdminToken, AdminTokenRepo, Agent, AgentPatch, AgentRepo, Approval, ApprovalDelivery, ApprovalRepo,
  ApprovalStatus, AuditCheckpoint, AuditEvent, AuditQuery, AuditRepo, BootstrapCredential, ConsoleLogoutRepo, CredentialRepo,
  GatewayAck, GatewayAckRepo, KeyRepo, ManifestRepo, PolicyBundle, PolicyRepo, Revocation, RevocationRepo,
  SigningKey, Store, Tenant, TenantRepo, TrustedIssuer, TrustedIssuerRepo,
} from '../types.js'
import { LOCK_CLASS, migratePostgres } from './migrations.js'

type Params = unknown[]
type Queryable = pg.Pool | pg.PoolClient

const INT8_OID = 20
/** Every BIGINT here is an epoch-ms time, a count or a sequence, all far below 2^53. */
const types = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === INT8_OID ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
}

/** Options of {@link openPostgresStore}. */
export interface PostgresStoreOptions {
  /** Where idle-connection errors are reported. */
  logger?: Logger
  /** Pool size (default 10). */
  max?: number
}

interface Prepared { name: string; text: string }

/** `?` placeholders → `$n` (no statement here has a `?` inside a literal). */
function numbered(sql: string): string {
  let i = 0
  return sql.replace(/\?/g, () => `$${++i}`)
}

function insertSql(t: { table: string; columns: readonly string[] }): string {
  return `INSERT INTO ${t.table} (${t.columns.join(', ')}) VALUES (${t.columns.map(() => '?').join(', ')})`
}

/** The PostgreSQL store. Construct with {@link openPostgresStore}. */
export class PostgresStore implements Store {
  readonly kind = 'postgres' as const
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

  private readonly prepared = new Map<string, Prepared>()
  private generation = 0
  private readonly held = new Set<string>()
  private closed = false

  /** Use {@link openPostgresStore}, which also applies migrations. */
  constructor(private readonly pool: pg.Pool) {
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

  private stmt(sql: string): Prepared {
    let p = this.prepared.get(sql)
    if (!p) {
      const h = createHash('sha1').update(sql).digest('hex').slice(0, 20)
      p = { name: `aegis_${this.generation}_${h}`, text: numbered(sql) }
      this.prepared.set(sql, p)
    }
    return p
  }

  private async q(db: Queryable, sql: string, params: Params): Promise<pg.QueryResult<Row>> {
    const p = this.stmt(sql)
    try {
      return await db.query<Row>({ name: p.name, text: p.text, values: params })
    } catch (err) {
      // A migration run by a newer control plane changed a table under our
      // named statements ("cached plan must not change result type"):
      // prepare everything afresh under new names, and retry once when not
      // inside a transaction (an aborted transaction cannot go on).
      if ((err as { code?: unknown }).code !== '0A000') throw err
      if (this.prepared.get(sql) === p) {
        this.generation += 1
        this.prepared.clear()
      }
      if (db !== this.pool) throw err
      const fresh = this.stmt(sql)
      return db.query<Row>({ name: fresh.name, text: fresh.text, values: params })
    }
  }

  private async all<R>(db: Queryable, sql: string, params: Params, map: (r: Row) => R): Promise<R[]> {
    return (await this.q(db, sql, params)).rows.map(map)
  }

  private async one<R>(db: Queryable, sql: string, params: Params, map: (r: Row) => R): Promise<R | null> {
    const r = (await this.q(db, sql, params)).rows[0]
    return r === undefined ? null : map(r)
  }

  private async count(db: Queryable, sql: string, params: Params): Promise<number> {
    return (await this.q(db, sql, params)).rowCount ?? 0
  }

  /** Runs `fn` and turns any driver error into ours. */
  private async w<R>(what: string, fn: () => Promise<R>): Promise<R> {
    try {
      return await fn()
    } catch (err) {
      throw storeError(err, what)
    }
  }

  private async tx<R>(fn: (c: pg.PoolClient) => Promise<R>): Promise<R> {
    const c = await checkOut(this.pool)
    let broken: Error | undefined
    try {
      await c.query('BEGIN')
      try {
        const r = await fn(c)
        await c.query('COMMIT')
        return r
      } catch (err) {
        await c.query('ROLLBACK').catch((e: Error) => { broken = e })
        throw err
      }
    } finally {
      c.release(broken ?? c.lostWith())
    }
  }

  /** Serializes a section across control planes until the transaction ends. */
  private async xactLock(c: pg.PoolClient, key: string): Promise<void> {
    await this.q(c, "SELECT pg_advisory_xact_lock(?, hashtext(coalesce(current_schema(), '') || ':' || ?))", [LOCK_CLASS, key])
  }

  private tenantRepo(): TenantRepo {
    const sel = 'SELECT * FROM tenants WHERE id = ?'
    return {
      create: (t) => this.w('tenant', async () => { await this.q(this.pool, insertSql(T.tenants), T.tenants.toParams(t)) }),
      get: (id) => this.w('tenant', () => this.one(this.pool, sel, [id], T.tenants.fromRow)),
      list: () => this.w('tenant', () => this.all(this.pool, 'SELECT * FROM tenants ORDER BY created_at, id', [], T.tenants.fromRow)),
      update: (id, patch) => this.w('tenant', () => this.tx(async (c) => {
        const cur = await this.one(c, `${sel} FOR UPDATE`, [id], T.tenants.fromRow)
        if (!cur) throw new NotFound('tenant not found')
        const next: Tenant = { ...cur, ...definedOnly(patch), id: cur.id, createdAt: cur.createdAt }
        await this.q(c, 'UPDATE tenants SET name = ?, require_attestation = ? WHERE id = ?', [next.name, next.requireAttestation, id])
        return next
      })),
      delete: (id) => this.w('tenant', async () => {
        if (await this.count(this.pool, 'DELETE FROM tenants WHERE id = ?', [id]) === 0) throw new NotFound('tenant not found')
      }),
    }
  }

  private agentRepo(): AgentRepo {
    const sel = 'SELECT * FROM agents WHERE tenant = ? AND agent_id = ?'
    const setCols = T.agents.columns.map((c) => `${c} = ?`).join(', ')
    return {
      create: (a) => this.w('agent', async () => { await this.q(this.pool, insertSql(T.agents), T.agents.toParams(a)) }),
      get: (tenant, agentId) => this.w('agent', () => this.one(this.pool, sel, [tenant, agentId], T.agents.fromRow)),
      getByClientId: (clientId) => this.w('agent', () => this.one(this.pool, 'SELECT * FROM agents WHERE client_id = ?', [clientId], T.agents.fromRow)),
      list: (tenant) => this.w('agent', () => this.all(this.pool, 'SELECT * FROM agents WHERE tenant = ? ORDER BY agent_id', [tenant], T.agents.fromRow)),
      listAll: () => this.w('agent', () => this.all(this.pool, 'SELECT * FROM agents ORDER BY tenant, agent_id', [], T.agents.fromRow)),
      listHashesPage: (after, limit) => this.w('agent', () => after
        ? this.all(this.pool, 'SELECT tenant, agent_id, capability_hash FROM agents WHERE (tenant, agent_id) > (?, ?) ORDER BY tenant, agent_id LIMIT ?', [after.tenant, after.agentId, limit], T.agentHash)
        : this.all(this.pool, 'SELECT tenant, agent_id, capability_hash FROM agents ORDER BY tenant, agent_id LIMIT ?', [limit], T.agentHash)),
      update: (tenant, agentId, patch: AgentPatch, updatedAt) => this.w('agent', () => this.tx(async (c) => {
        const cur = await this.one(c, `${sel} FOR UPDATE`, [tenant, agentId], T.agents.fromRow)
        if (!cur) throw new NotFound('agent not found')
        const next: Agent = {
          ...cur, ...definedOnly(patch),
          tenant: cur.tenant, agentId: cur.agentId, clientId: cur.clientId, createdAt: cur.createdAt, updatedAt,
        }
        await this.q(c, `UPDATE agents SET ${setCols} WHERE tenant = ? AND agent_id = ?`, [...T.agents.toParams(next), tenant, agentId])
        return next
      })),
      delete: (tenant, agentId) => this.w('agent', async () => {
        if (await this.count(this.pool, 'DELETE FROM agents WHERE tenant = ? AND agent_id = ?', [tenant, agentId]) === 0) throw new NotFound('agent not found')
      }),
    }
  }

  private credentialRepo(): CredentialRepo {
    return {
      create: (c: BootstrapCredential) => this.w('credential', async () => { await this.q(this.pool, insertSql(T.credentials), T.credentials.toParams(c)) }),
      get: (clientId) => this.w('credential', () => this.one(this.pool, 'SELECT * FROM bootstrap_credentials WHERE client_id = ?', [clientId], T.credentials.fromRow)),
      // One conditional UPDATE: the row lock makes exactly one concurrent caller see used_at IS NULL.
      consume: (clientId, at) => this.w('credential', async () =>
        await this.count(this.pool, 'UPDATE bootstrap_credentials SET used_at = ? WHERE client_id = ? AND used_at IS NULL', [at, clientId]) === 1),
      deleteForAgent: (tenant, agentId) => this.w('credential', async () => {
        await this.q(this.pool, 'DELETE FROM bootstrap_credentials WHERE tenant = ? AND agent_id = ?', [tenant, agentId])
      }),
    }
  }

  private adminTokenRepo(): AdminTokenRepo {
    return {
      create: (t: AdminToken) => this.w('admin token', async () => { await this.q(this.pool, insertSql(T.adminTokens), T.adminTokens.toParams(t)) }),
      getByHash: (h) => this.w('admin token', () => this.one(this.pool, 'SELECT * FROM admin_tokens WHERE token_hash = ?', [h], T.adminTokens.fromRow)),
      get: (id) => this.w('admin token', () => this.one(this.pool, 'SELECT * FROM admin_tokens WHERE id = ?', [id], T.adminTokens.fromRow)),
      list: (tenant) => this.w('admin token', () => {
        if (tenant === undefined) return this.all(this.pool, 'SELECT * FROM admin_tokens ORDER BY created_at, id', [], T.adminTokens.fromRow)
        if (tenant === null) return this.all(this.pool, 'SELECT * FROM admin_tokens WHERE tenant IS NULL ORDER BY created_at, id', [], T.adminTokens.fromRow)
        return this.all(this.pool, 'SELECT * FROM admin_tokens WHERE tenant = ? ORDER BY created_at, id', [tenant], T.adminTokens.fromRow)
      }),
      revoke: (id, at) => this.w('admin token', async () => {
        if (await this.count(this.pool, 'UPDATE admin_tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?', [at, id]) === 0) {
          throw new NotFound('admin token not found')
        }
      }),
    }
  }

  private manifestRepo(): ManifestRepo {
    return {
      put: (hash, manifest) => this.w('manifest', async () => {
        await this.q(this.pool, 'INSERT INTO manifests (hash, manifest) VALUES (?, ?) ON CONFLICT (hash) DO NOTHING', [hash, JSON.stringify(manifest)])
      }),
      get: (hash) => this.w('manifest', () => this.one(this.pool, 'SELECT manifest FROM manifests WHERE hash = ?', [hash], (r) => JSON.parse(String(r.manifest)) as unknown)),
    }
  }

  private keyRepo(): KeyRepo {
    const setCols = T.signingKeys.columns.map((c) => `${c} = ?`).join(', ')
    return {
      list: () => this.w('key', () => this.all(this.pool, 'SELECT * FROM signing_keys ORDER BY created_at, kid', [], T.signingKeys.fromRow)),
      insert: (k: SigningKey) => this.w('key', async () => { await this.q(this.pool, insertSql(T.signingKeys), T.signingKeys.toParams(k)) }),
      update: (kid, patch) => this.w('key', () => this.tx(async (c) => {
        const cur = await this.one(c, 'SELECT * FROM signing_keys WHERE kid = ? FOR UPDATE', [kid], T.signingKeys.fromRow)
        if (!cur) throw new NotFound('key not found')
        const next: SigningKey = { ...cur, ...definedOnly(patch), kid: cur.kid }
        await this.q(c, `UPDATE signing_keys SET ${setCols} WHERE kid = ?`, [...T.signingKeys.toParams(next), kid])
      })),
    }
  }

  private auditRepo(): AuditRepo {
    // One statement per batch whatever its size: parallel arrays through unnest.
    const cast = ['text', 'bigint', 'text', 'text', 'text', 'text', 'text', 'bigint', 'text', 'text']
    const insert = `INSERT INTO audit_events (${T.auditEvents.columns.join(', ')})
      SELECT * FROM unnest(${cast.map((t) => `?::${t}[]`).join(', ')}) RETURNING id, chain_id, chain_seq`
    return {
      append: (events) => this.w('audit event', async () => {
        if (events.length === 0) return []
        const cols: unknown[][] = T.auditEvents.columns.map(() => [])
        for (const e of events) T.auditEvents.toParams(e).forEach((v, i) => cols[i]!.push(v))
        return this.tx(async (c) => {
          // Ids are taken after the lock, so they follow commit order and a
          // reader paging by `id > cursor` never skips a later-committed event.
          await this.xactLock(c, 'audit.append')
          const rows = (await this.q(c, insert, cols)).rows
          const byKey = new Map(rows.map((r) => [`${String(r.chain_id)}\u0000${Number(r.chain_seq)}`, Number(r.id)]))
          return events.map((e) => byKey.get(`${e.chainId}\u0000${e.chainSeq}`) as number)
        })
      }),
      head: (chainId) => this.w('audit event', () =>
        this.one(this.pool, 'SELECT * FROM audit_events WHERE chain_id = ? ORDER BY chain_seq DESC LIMIT 1', [chainId], T.auditEvents.fromRow)),
      query: (q: AuditQuery) => this.w('audit event', () => {
        const where: string[] = []
        const params: Params = []
        if (q.type !== undefined) { where.push('type = ?'); params.push(q.type) }
        if (q.tenant !== undefined) { where.push('tenant = ?'); params.push(q.tenant) }
        if (q.since !== undefined) { where.push('ts >= ?'); params.push(q.since) }
        if (q.cursor !== undefined) { where.push('id > ?'); params.push(q.cursor) }
        params.push(sqlLimit(q.limit))
        const sql = `SELECT * FROM audit_events${where.length ? ' WHERE ' + where.join(' AND ') : ''} ORDER BY id LIMIT ?`
        return this.all(this.pool, sql, params, T.auditEvents.withId)
      }),
      chains: () => this.w('audit event', () => this.all(this.pool, 'SELECT DISTINCT chain_id FROM audit_events ORDER BY chain_id', [], (r) => String(r.chain_id))),
      chain: (chainId, afterSeq, limit) => this.w('audit event', () =>
        this.all(this.pool, 'SELECT * FROM audit_events WHERE chain_id = ? AND chain_seq > ? ORDER BY chain_seq LIMIT ?',
          [chainId, afterSeq, sqlLimit(limit)], T.auditEvents.withId)),
      putCheckpoint: (c: AuditCheckpoint) => this.w('audit checkpoint', async () => {
        await this.q(this.pool, `${insertSql(T.auditCheckpoints)} ON CONFLICT (chain_id, chain_seq) DO UPDATE SET
          head_hash = excluded.head_hash, ts = excluded.ts, kid = excluded.kid, signature = excluded.signature`, T.auditCheckpoints.toParams(c))
      }),
      latestCheckpoints: () => this.w('audit checkpoint', () => this.all(this.pool,
        'SELECT DISTINCT ON (chain_id) * FROM audit_checkpoints ORDER BY chain_id, chain_seq DESC', [], T.auditCheckpoints.fromRow)),
      checkpoints: (chainId, afterSeq, limit) => this.w('audit checkpoint', () => this.all(this.pool,
        'SELECT * FROM audit_checkpoints WHERE chain_id = ? AND chain_seq > ? ORDER BY chain_seq LIMIT ?', [chainId, afterSeq, sqlLimit(limit)], T.auditCheckpoints.fromRow)),
    }
  }

  private revocationRepo(): RevocationRepo {
    return {
      add: (r: Omit<Revocation, 'seq'>) => this.w('revocation', () => this.tx(async (c) => {
        // As for audit ids: seq order is commit order, so `since(seq)` never skips an entry.
        await this.xactLock(c, 'revocations.add')
        return await this.one(c, `${insertSql(T.revocations)} RETURNING *`, T.revocations.toParams(r), T.revocations.withSeq) as Revocation
      })),
      listActive: (now) => this.w('revocation', () => this.all(this.pool, 'SELECT * FROM revocations WHERE expires_at > ? AND lifted_at IS NULL ORDER BY seq', [now], T.revocations.withSeq)),
      listActivePage: (now, afterSeq, limit) => this.w('revocation', () => this.all(this.pool, 'SELECT * FROM revocations WHERE seq > ? AND expires_at > ? AND lifted_at IS NULL ORDER BY seq LIMIT ?', [afterSeq, now, limit], T.revocations.withSeq)),
      listStanding: (now) => this.w('revocation', () => this.all(this.pool,
        "SELECT * FROM revocations WHERE type IN ('agent', 'client', 'tenant') AND expires_at > ? AND lifted_at IS NULL ORDER BY seq", [now], T.revocations.withSeq)),
      lift: (seq, at, by) => this.w('revocation', () => this.tx(async (c) => {
        // The lift takes the next seq under the same lock as add(), so seq order stays commit order.
        await this.xactLock(c, 'revocations.add')
        const cur = await this.one(c, 'SELECT * FROM revocations WHERE seq = ? AND expires_at > ? AND lifted_at IS NULL FOR UPDATE', [seq, at], T.revocations.withSeq)
        if (!cur) return null
        const liftSeq = await this.one(c, "SELECT nextval('revocations_seq_seq') AS seq", [], (r) => Number(r.seq)) as number
        await this.q(c, 'UPDATE revocations SET lifted_at = ?, lifted_by = ?, lift_seq = ?, expires_at = ? WHERE seq = ?', [at, by, liftSeq, at, seq])
        return { ...cur, expiresAt: at, liftedAt: at, liftedBy: by, liftSeq }
      })),
      since: (afterSeq) => this.w('revocation', () => this.all(this.pool, 'SELECT * FROM revocations WHERE seq > ? ORDER BY seq', [afterSeq], T.revocations.withSeq)),
      get: (seq) => this.w('revocation', () => this.one(this.pool, 'SELECT * FROM revocations WHERE seq = ?', [seq], T.revocations.withSeq)),
      // The sequence remembers the highest seq handed out, even after a purge.
      lastSeq: () => this.w('revocation', async () =>
        await this.one(this.pool, 'SELECT CASE WHEN is_called THEN last_value ELSE 0 END AS seq FROM revocations_seq_seq', [], (r) => Number(r.seq)) ?? 0),
      purgeExpired: (now) => this.w('revocation', () => this.count(this.pool, 'DELETE FROM revocations WHERE expires_at <= ?', [now])),
    }
  }

  private policyRepo(): PolicyRepo {
    const sel = 'SELECT * FROM policy_bundles WHERE tenant = ? AND id = ?'
    return {
      create: (p) => this.w('policy bundle', async () => { await this.q(this.pool, insertSql(T.policies), T.policies.toParams(p)) }),
      get: (tenant, id) => this.w('policy bundle', () => this.one(this.pool, sel, [tenant, id], T.policies.fromRow)),
      list: (tenant) => this.w('policy bundle', () => this.all(this.pool, 'SELECT * FROM policy_bundles WHERE tenant = ? ORDER BY created_at, id', [tenant], T.policies.fromRow)),
      listActive: () => this.w('policy bundle', () => this.all(this.pool, "SELECT * FROM policy_bundles WHERE status = 'active' ORDER BY tenant", [], T.policies.fromRow)),
      activate: (tenant, id, at) => this.w('policy bundle', () => this.tx(async (c) => {
        // Per-tenant lock first: each statement after it sees the other activation's result.
        await this.xactLock(c, `policy.activate.${tenant}`)
        if (!await this.one(c, sel, [tenant, id], T.policies.fromRow)) throw new NotFound('policy bundle not found')
        await this.q(c, "UPDATE policy_bundles SET status = 'inactive' WHERE tenant = ? AND status = 'active' AND id <> ?", [tenant, id])
        return await this.one(c, "UPDATE policy_bundles SET status = 'active', activated_at = ? WHERE tenant = ? AND id = ? RETURNING *",
          [at, tenant, id], T.policies.fromRow) as PolicyBundle
      })),
      update: (tenant, id, patch) => this.w('policy bundle', () => this.tx(async (c) => {
        const cur = await this.one(c, `${sel} FOR UPDATE`, [tenant, id], T.policies.fromRow)
        if (!cur) throw new NotFound('policy bundle not found')
        const next: PolicyBundle = { ...cur, ...definedOnly(patch) }
        await this.q(c, 'UPDATE policy_bundles SET status = ?, mode = ?, reviewed_at = ? WHERE tenant = ? AND id = ?',
          [next.status, next.mode, next.reviewedAt, tenant, id])
        return next
      })),
    }
  }

  private approvalRepo(): ApprovalRepo {
    return {
      create: (a: Approval) => this.w('approval', async () => { await this.q(this.pool, insertSql(T.approvals), T.approvals.toParams(a)) }),
      get: (id) => this.w('approval', () => this.one(this.pool, 'SELECT * FROM approvals WHERE id = ?', [id], T.approvals.fromRow)),
      findOpen: (tenant, agentId, tool, paramsHash, now) => this.w('approval', () => this.one(this.pool,
        `SELECT * FROM approvals WHERE tenant = ? AND agent_id = ? AND tool = ? AND params_hash = ?
           AND status = 'pending' AND expires_at > ? ORDER BY created_at DESC, id LIMIT 1`,
        [tenant, agentId, tool, paramsHash, now], T.approvals.fromRow)),
      list: (f: { tenant?: string; status?: ApprovalStatus; limit: number }) => this.w('approval', () => {
        const where: string[] = []
        const params: Params = []
        if (f.tenant !== undefined) { where.push('tenant = ?'); params.push(f.tenant) }
        if (f.status !== undefined) { where.push('status = ?'); params.push(f.status) }
        params.push(sqlLimit(f.limit))
        return this.all(this.pool, `SELECT * FROM approvals${where.length ? ' WHERE ' + where.join(' AND ') : ''} ORDER BY created_at DESC, id LIMIT ?`,
          params, T.approvals.fromRow)
      }),
      countOpen: (f) => this.w('approval', async () => {
        const sql = `SELECT COUNT(*) AS n FROM approvals WHERE tenant = ?${f.agentId !== undefined ? ' AND agent_id = ?' : ''}
          AND status = 'pending' AND expires_at > ?`
        const params: Params = f.agentId !== undefined ? [f.tenant, f.agentId, f.now] : [f.tenant, f.now]
        return await this.one(this.pool, sql, params, (r) => Number(r.n)) ?? 0
      }),
      // One conditional UPDATE: a second decision finds the row no longer pending.
      decide: (id, d) => this.w('approval', () => this.one(this.pool,
        `UPDATE approvals SET status = ?, decided_by = ?, reason = ?, decided_at = ?, override_jti = ?
          WHERE id = ? AND status = 'pending' AND expires_at > ? RETURNING *`,
        [d.status, d.decidedBy, d.reason, d.decidedAt, d.overrideJti, id, d.decidedAt], T.approvals.fromRow)),
      setDeliveries: (id, deliveries: ApprovalDelivery[]) => this.w('approval', async () => {
        if (await this.count(this.pool, 'UPDATE approvals SET deliveries = ? WHERE id = ?', [JSON.stringify(deliveries), id]) === 0) {
          throw new NotFound('approval not found')
        }
      }),
      expire: (now) => this.w('approval', async () => (await this.all(this.pool,
        "UPDATE approvals SET status = 'expired' WHERE status = 'pending' AND expires_at <= ? RETURNING *", [now], T.approvals.fromRow))
        .sort((a, b) => a.createdAt - b.createdAt || a.id.localeCompare(b.id))),
    }
  }

  private trustedIssuerRepo(): TrustedIssuerRepo {
    return {
      create: (t: TrustedIssuer) => this.w('trusted issuer', async () => { await this.q(this.pool, insertSql(T.trustedIssuers), T.trustedIssuers.toParams(t)) }),
      list: (tenant) => this.w('trusted issuer', () => this.all(this.pool, 'SELECT * FROM trusted_issuers WHERE tenant = ? ORDER BY created_at, id', [tenant], T.trustedIssuers.fromRow)),
      findByIssuer: (issuer) => this.w('trusted issuer', () => this.all(this.pool, 'SELECT * FROM trusted_issuers WHERE issuer = ? ORDER BY tenant, id', [issuer], T.trustedIssuers.fromRow)),
      delete: (tenant, id) => this.w('trusted issuer', async () => {
        if (await this.count(this.pool, 'DELETE FROM trusted_issuers WHERE tenant = ? AND id = ?', [tenant, id]) === 0) throw new NotFound('trusted issuer not found')
      }),
    }
  }

  private gatewayAckRepo(): GatewayAckRepo {
    return {
      put: (a: GatewayAck) => this.w('gateway ack', async () => {
        await this.q(this.pool, `${insertSql(T.gatewayAcks)} ON CONFLICT (gateway_id) DO UPDATE SET seq = excluded.seq, updated_at = excluded.updated_at`,
          T.gatewayAcks.toParams(a))
      }),
      list: () => this.w('gateway ack', () => this.all(this.pool, 'SELECT * FROM gateway_acks ORDER BY gateway_id', [], T.gatewayAcks.fromRow)),
    }
  }

  private consoleLogoutRepo(): ConsoleLogoutRepo {
    return {
      // DO NOTHING: two logouts racing with the same cookie, on any control plane, both succeed.
      add: (sid, expiresAt) => this.w('console logout', async () => {
        await this.q(this.pool, 'INSERT INTO console_logouts (sid, expires_at) VALUES (?, ?) ON CONFLICT (sid) DO NOTHING', [sid, expiresAt])
      }),
      has: (sid) => this.w('console logout', async () => (await this.q(this.pool, 'SELECT 1 FROM console_logouts WHERE sid = ?', [sid])).rows.length > 0),
      purgeExpired: (now) => this.w('console logout', () => this.count(this.pool, 'DELETE FROM console_logouts WHERE expires_at <= ?', [now])),
    }
  }

  /**
   * Session advisory lock `pg_try_advisory_lock(hashtext(schema || ':' || name))`
   * (advisory locks are database-wide: the schema keeps deployments or test
   * runs that share a database in separate schemas from blocking each other) on a client
   * held for the duration of `fn`, then unlocked. Never waits for the lock.
   * Errors of `fn` propagate unchanged.
   */
  async tryWithLock<R>(name: string, fn: () => Promise<R>): Promise<{ ran: true; value: R } | { ran: false }> {
    // Session locks are re-entrant per connection, so refuse a nested or
    // concurrent call of this store before asking the database.
    if (this.held.has(name)) return { ran: false }
    this.held.add(name)
    let client: CheckedOutClient | undefined
    let locked = false
    let broken: Error | undefined
    try {
      try {
        client = await checkOut(this.pool)
        const r = await client.query<{ ok: boolean }>("SELECT pg_try_advisory_lock(hashtext(coalesce(current_schema(), '') || ':' || $1)) AS ok", [name])
        locked = r.rows[0]?.ok === true
      } catch (err) {
        throw storeError(err, 'lock')
      }
      if (!locked) return { ran: false }
      return { ran: true, value: await fn() }
    } finally {
      this.held.delete(name)
      if (client) {
        if (locked) {
          // A failed unlock leaves the lock on this session: destroy the
          // connection so the server releases it.
          await client.query("SELECT pg_advisory_unlock(hashtext(coalesce(current_schema(), '') || ':' || $1))", [name]).catch((e: Error) => { broken = e })
        }
        client.release(broken ?? client.lostWith())
      }
    }
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    await this.pool.end()
  }
}

/** A pooled client held by the store, which knows whether its connection was lost meanwhile. */
interface CheckedOutClient extends pg.PoolClient {
  /** The error that ended the connection while checked out, or undefined. */
  lostWith(): Error | undefined
}

/**
 * Checks a client out of the pool with an `error` listener for as long as it
 * is held. The pool listens only to idle clients: without this, a database
 * that goes away while a lock or transaction is held emits an unhandled
 * `error` and the process exits. The error is kept and the client released
 * as broken; the pending query rejects on its own.
 */
async function checkOut(pool: pg.Pool): Promise<CheckedOutClient> {
  const client = await pool.connect()
  let lost: Error | undefined
  const onError = (err: Error): void => { lost = err }
  client.on('error', onError)
  const release = client.release.bind(client)
  return Object.assign(client, {
    lostWith: () => lost,
    release: (err?: Error | boolean) => {
      client.off('error', onError)
      release(err)
    },
  })
}

/**
 * Connects to PostgreSQL at `url` and applies pending migrations (under an
 * advisory lock, so control planes starting together do not race). Tables
 * are created in the schema the connection's search_path names.
 */
export async function openPostgresStore(url: string, opts: PostgresStoreOptions = {}): Promise<Store> {
  const pool = new pg.Pool({ connectionString: url, max: opts.max ?? 10, types })
  // An idle client's error must not crash the process; the next query reports it.
  pool.on('error', (err) => opts.logger?.warn({ err: { message: err.message } }, 'postgres idle client error'))
  try {
    const c = await checkOut(pool)
    try {
      await migratePostgres(c)
    } finally {
      c.release(c.lostWith())
    }
  } catch (err) {
    await pool.end().catch(() => {})
    throw storeError(err, 'database')
  }
  return new PostgresStore(pool)
}
