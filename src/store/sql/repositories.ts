/**
 * The 14 repositories of both SQL stores, written once: every statement's
 * text and every update's merge live here, run by an executor (executor.ts)
 * on SQLite or PostgreSQL. Where the databases differ, a named dialect hook
 * says so (row locks, serializing locks, revocation sequence reads, the
 * batched audit insert); placeholders are `?` and PostgreSQL's executor
 * numbers them.
 *
 * Guarantees that must hold across control planes are made by the database:
 * single statements with conditions (consume, decide), unique indexes, row
 * locks and advisory locks (PostgreSQL), the one write lock (SQLite).
 */
import { NotFound } from '../../errors.js'
import type { TokenFacts } from '../deny-list.js'
import type {
  AdminTokenRepo,
  Agent,
  AgentRepo,
  ApprovalRepo,
  AuditQuery,
  AuditRepo,
  ConsoleLogoutRepo,
  CredentialRepo,
  DecisionQuery,
  DecisionRecord,
  DecisionRepo,
  GatewayAckRepo,
  KeyRepo,
  KpiRepo,
  ManifestRepo,
  PolicyBundle,
  PolicyRepo,
  Revocation,
  RevocationFilter,
  RevocationRepo,
  SigningKey,
  Store,
  Tenant,
  TenantRepo,
  TrustedIssuerRepo,
} from '../types.js'
import { type DecisionKindStyle, insertSql, one, run, type Sql } from './executor.js'
import * as T from './rows.js'
import { definedOnly, sqlLimit, storeError } from './rows.js'

/**
 * Wraps each method of `repo` so a driver error rejects as ours
 * ({@link storeError}, labelled `what`), also when an executor throws
 * synchronously (better-sqlite3 does).
 */
function guarded<R extends object>(what: string, repo: R): R {
  const out: Record<string, unknown> = {}
  for (const [name, fn] of Object.entries(repo) as Array<[string, (...args: unknown[]) => Promise<unknown>]>) {
    out[name] = (...args: unknown[]): Promise<unknown> => {
      try {
        return fn(...args).then(undefined, (err: unknown) => {
          throw storeError(err, what)
        })
      } catch (err) {
        return Promise.reject(storeError(err, what))
      }
    }
  }
  return out as R
}

/** `SET a = ?, b = ?, …` over every column of a row mapping, for whole-row updates. */
function setAll(t: { columns: readonly string[] }): string {
  return t.columns.map((c) => `${c} = ?`).join(', ')
}

/** ` WHERE a AND b` or nothing. */
function whereOf(conditions: string[]): string {
  return conditions.length ? ` WHERE ${conditions.join(' AND ')}` : ''
}

function tenantRepo(sql: Sql): TenantRepo {
  const byId = 'SELECT * FROM tenants WHERE id = ?'
  return guarded<TenantRepo>('tenant', {
    create: async (t) => {
      await sql.run(insertSql(T.tenants), T.tenants.toParams(t))
    },
    get: (id) => sql.one(byId, [id], T.tenants.fromRow),
    list: () => sql.all('SELECT * FROM tenants ORDER BY created_at, id', [], T.tenants.fromRow),
    update: (id, patch) =>
      sql.tx(function* () {
        const cur = yield* one(byId + sql.dialect.forUpdate, [id], T.tenants.fromRow)
        if (!cur) throw new NotFound('tenant not found')
        const next: Tenant = { ...cur, ...definedOnly(patch), id: cur.id, createdAt: cur.createdAt }
        yield* run('UPDATE tenants SET name = ?, require_attestation = ?, max_delegation_depth = ? WHERE id = ?', [
          next.name,
          next.requireAttestation ? 1 : 0,
          next.maxDelegationDepth ?? null,
          id,
        ])
        return next
      }),
    delete: async (id) => {
      if ((await sql.run('DELETE FROM tenants WHERE id = ?', [id])) === 0) throw new NotFound('tenant not found')
    },
  })
}

function agentRepo(sql: Sql): AgentRepo {
  const byKey = 'SELECT * FROM agents WHERE tenant = ? AND agent_id = ?'
  const update = `UPDATE agents SET ${setAll(T.agents)} WHERE tenant = ? AND agent_id = ?`
  return guarded<AgentRepo>('agent', {
    create: async (a) => {
      await sql.run(insertSql(T.agents), T.agents.toParams(a))
    },
    get: (tenant, agentId) => sql.one(byKey, [tenant, agentId], T.agents.fromRow),
    getByClientId: (clientId) => sql.one('SELECT * FROM agents WHERE client_id = ?', [clientId], T.agents.fromRow),
    list: (tenant) => sql.all('SELECT * FROM agents WHERE tenant = ? ORDER BY agent_id', [tenant], T.agents.fromRow),
    listAll: () => sql.all('SELECT * FROM agents ORDER BY tenant, agent_id', [], T.agents.fromRow),
    listHashesPage: (after, limit) =>
      after
        ? sql.all(
            'SELECT tenant, agent_id, capability_hash FROM agents WHERE (tenant, agent_id) > (?, ?) ORDER BY tenant, agent_id LIMIT ?',
            [after.tenant, after.agentId, limit],
            T.agentHash,
          )
        : sql.all('SELECT tenant, agent_id, capability_hash FROM agents ORDER BY tenant, agent_id LIMIT ?', [limit], T.agentHash),
    update: (tenant, agentId, patch, updatedAt) =>
      sql.tx(function* () {
        const cur = yield* one(byKey + sql.dialect.forUpdate, [tenant, agentId], T.agents.fromRow)
        if (!cur) throw new NotFound('agent not found')
        const next: Agent = {
          ...cur,
          ...definedOnly(patch),
          tenant: cur.tenant,
          agentId: cur.agentId,
          clientId: cur.clientId,
          createdAt: cur.createdAt,
          updatedAt,
        }
        yield* run(update, [...T.agents.toParams(next), tenant, agentId])
        return next
      }),
    delete: async (tenant, agentId) => {
      if ((await sql.run('DELETE FROM agents WHERE tenant = ? AND agent_id = ?', [tenant, agentId])) === 0) throw new NotFound('agent not found')
    },
  })
}

function credentialRepo(sql: Sql): CredentialRepo {
  return guarded<CredentialRepo>('credential', {
    create: async (c) => {
      await sql.run(insertSql(T.credentials), T.credentials.toParams(c))
    },
    get: (clientId) => sql.one('SELECT * FROM bootstrap_credentials WHERE client_id = ?', [clientId], T.credentials.fromRow),
    // One conditional UPDATE: exactly one concurrent caller sees used_at IS NULL.
    consume: async (clientId, at) =>
      (await sql.run('UPDATE bootstrap_credentials SET used_at = ? WHERE client_id = ? AND used_at IS NULL', [at, clientId])) === 1,
    deleteForAgent: async (tenant, agentId) => {
      await sql.run('DELETE FROM bootstrap_credentials WHERE tenant = ? AND agent_id = ?', [tenant, agentId])
    },
  })
}

function adminTokenRepo(sql: Sql): AdminTokenRepo {
  return guarded<AdminTokenRepo>('admin token', {
    create: async (t) => {
      await sql.run(insertSql(T.adminTokens), T.adminTokens.toParams(t))
    },
    getByHash: (h) => sql.one('SELECT * FROM admin_tokens WHERE token_hash = ?', [h], T.adminTokens.fromRow),
    get: (id) => sql.one('SELECT * FROM admin_tokens WHERE id = ?', [id], T.adminTokens.fromRow),
    list: (tenant) => {
      if (tenant === undefined) return sql.all('SELECT * FROM admin_tokens ORDER BY created_at, id', [], T.adminTokens.fromRow)
      if (tenant === null) return sql.all('SELECT * FROM admin_tokens WHERE tenant IS NULL ORDER BY created_at, id', [], T.adminTokens.fromRow)
      return sql.all('SELECT * FROM admin_tokens WHERE tenant = ? ORDER BY created_at, id', [tenant], T.adminTokens.fromRow)
    },
    revoke: async (id, at) => {
      if ((await sql.run('UPDATE admin_tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?', [at, id])) === 0) {
        throw new NotFound('admin token not found')
      }
    },
  })
}

function manifestRepo(sql: Sql): ManifestRepo {
  return guarded<ManifestRepo>('manifest', {
    put: async (hash, manifest) => {
      await sql.run('INSERT INTO manifests (hash, manifest) VALUES (?, ?) ON CONFLICT (hash) DO NOTHING', [hash, JSON.stringify(manifest)])
    },
    get: (hash) => sql.one('SELECT manifest FROM manifests WHERE hash = ?', [hash], (r) => JSON.parse(String(r.manifest)) as unknown),
  })
}

function keyRepo(sql: Sql): KeyRepo {
  const update = `UPDATE signing_keys SET ${setAll(T.signingKeys)} WHERE kid = ?`
  return guarded<KeyRepo>('key', {
    list: () => sql.all('SELECT * FROM signing_keys ORDER BY created_at, kid', [], T.signingKeys.fromRow),
    insert: async (k) => {
      await sql.run(insertSql(T.signingKeys), T.signingKeys.toParams(k))
    },
    update: (kid, patch) =>
      sql.tx(function* () {
        const cur = yield* one(`SELECT * FROM signing_keys WHERE kid = ?${sql.dialect.forUpdate}`, [kid], T.signingKeys.fromRow)
        if (!cur) throw new NotFound('key not found')
        const next: SigningKey = { ...cur, ...definedOnly(patch), kid: cur.kid }
        yield* run(update, [...T.signingKeys.toParams(next), kid])
      }),
  })
}

/**
 * `column = ?` for each filter given, in the order given (the order of an
 * index's leading columns), into `where` and `args`.
 */
function equalities(filters: ReadonlyArray<readonly [column: string, value: unknown]>, where: string[], args: unknown[]): void {
  for (const [column, value] of filters) {
    if (value === undefined) continue
    where.push(`${column} = ?`)
    args.push(value)
  }
}

/** The statement an audit page query sends (exported so the bench can EXPLAIN exactly it). */
export function auditQuerySql(q: AuditQuery): { text: string; args: unknown[] } {
  const where: string[] = []
  const args: unknown[] = []
  equalities(
    [
      ['type', q.type],
      ['tenant', q.tenant],
      ['actor', q.actor],
    ],
    where,
    args,
  )
  const desc = q.order === 'desc'
  if (q.since !== undefined) {
    // ts is each writer's clock, not the id order: the time marks (migration 15) give the first id an event at or
    // after since can have, so the page is read in id order from there, through the filter's own (…, id) index.
    // ts + 0 keeps ts's statistics from the planner: past the mark nearly every event is at or after since, which
    // they cannot tell, and with a recent since PostgreSQL took few events to qualify and planned a parallel scan.
    where.push('id >= (SELECT first_id FROM audit_time_marks WHERE max_ts >= ? ORDER BY max_ts, first_id LIMIT 1)', 'ts + 0 >= ?')
    args.push(q.since, q.since)
  }
  if (q.cursor !== undefined) {
    where.push(desc ? 'id < ?' : 'id > ?')
    args.push(q.cursor)
  }
  args.push(sqlLimit(q.limit))
  return { text: `SELECT * FROM audit_events${whereOf(where)} ORDER BY id${desc ? ' DESC' : ''} LIMIT ?`, args }
}

/** The statement RevocationRepo.listActivePage sends (exported so a test can EXPLAIN exactly it). */
export function revocationPageSql(now: number, afterSeq: number, limit: number, filter?: RevocationFilter): { text: string; args: unknown[] } {
  const where = ['seq > ?', 'expires_at > ?', 'lifted_at IS NULL']
  const args: unknown[] = [afterSeq, now]
  if (filter !== undefined) {
    where.push('tenant = ?')
    args.push(filter.tenant)
    if (filter.agentId !== undefined) {
      // Each side of the OR has an index: (type, value), and the partial one on (tenant, agent_id) (migration 13).
      where.push("((type = 'agent' AND value = ?) OR agent_id = ?)")
      args.push(filter.agentId, filter.agentId)
    }
  }
  args.push(sqlLimit(limit))
  return { text: `SELECT * FROM revocations WHERE ${where.join(' AND ')} ORDER BY seq LIMIT ?`, args }
}

/** The statement RevocationRepo.listCovering sends (exported so a test can EXPLAIN exactly it). */
export function revocationCoveringSql(tokens: readonly TokenFacts[], now: number): { text: string; args: unknown[] } {
  const named: Array<[Revocation['type'], string[]]> = [
    ['jti', tokens.map((t) => t.jti)],
    ['agent', tokens.map((t) => t.agentId)],
    ['client', tokens.map((t) => t.clientId)],
    ['tenant', tokens.map((t) => t.tenant)],
    ['kid', tokens.map((t) => t.kid)],
  ]
  const args: unknown[] = [now]
  const alternatives = ["type = 'issued_before'"]
  for (const [type, values] of named) {
    const distinct = [...new Set(values.filter((v) => v !== ''))]
    if (distinct.length === 0) continue
    alternatives.push(`(type = ? AND value IN (${distinct.map(() => '?').join(', ')}))`)
    args.push(type, ...distinct)
  }
  // `expires_at + 0`: without statistics SQLite would rather read (type, expires_at), every live jti entry, than (type, value).
  return { text: `SELECT * FROM revocations WHERE expires_at + 0 > ? AND lifted_at IS NULL AND (${alternatives.join(' OR ')}) ORDER BY seq`, args }
}

/** A decision kind that may be written into a statement's text (PostgreSQL's `literal` style). */
const DECISION_KIND_LITERAL = /^[a-z_]{1,32}$/

/**
 * The statement a decision-log page query sends (exported so the bench can
 * EXPLAIN exactly it). A kind other than allow is named so that the indexes
 * holding every kind but allow (migration 12) can serve it, per `kinds`
 * (Dialect.decisionKinds).
 */
export function decisionQuerySql(q: DecisionQuery, kinds: DecisionKindStyle = 'term'): { text: string; args: unknown[] } {
  const where: string[] = []
  const args: unknown[] = []
  equalities(
    [
      ['tenant', q.tenant],
      ['agent_id', q.agentId],
      ['tool', q.tool],
    ],
    where,
    args,
  )
  if (q.decision === undefined) {
    /* no kind filter */
  } else if (q.decision !== 'allow' && kinds === 'literal' && DECISION_KIND_LITERAL.test(q.decision)) {
    where.push(`decision = '${q.decision}'`)
  } else {
    where.push('decision = ?')
    args.push(q.decision)
    if (q.decision !== 'allow' && kinds === 'term') where.push("decision <> 'allow'")
  }
  equalities([['enforced', q.enforced === undefined ? undefined : q.enforced ? 1 : 0]], where, args)
  if (q.since !== undefined) {
    where.push('ts >= ?')
    args.push(q.since)
  }
  if (q.until !== undefined) {
    where.push('ts < ?')
    args.push(q.until)
  }
  // A row value, so both databases seek the (…, ts, id) index rather than filter.
  if (q.after !== undefined) {
    where.push('(ts, id) < (?, ?)')
    args.push(q.after.ts, q.after.id)
  }
  args.push(sqlLimit(q.limit))
  return { text: `SELECT * FROM decisions${whereOf(where)} ORDER BY ts DESC, id DESC LIMIT ?`, args }
}
function auditRepo(sql: Sql): AuditRepo {
  const events = guarded<Pick<AuditRepo, 'append' | 'head' | 'query' | 'chains' | 'chain'>>('audit event', {
    append: async (batch, opts) => (batch.length === 0 ? [] : sql.dialect.appendAudit(batch, opts?.follows)),
    head: (chainId) => sql.one('SELECT * FROM audit_events WHERE chain_id = ? ORDER BY chain_seq DESC LIMIT 1', [chainId], T.auditEvents.fromRow),
    query: (q) => {
      const { text, args } = auditQuerySql(q)
      return sql.all(text, args, T.auditEvents.withId)
    },
    chains: () => sql.all('SELECT DISTINCT chain_id FROM audit_events ORDER BY chain_id', [], (r) => String(r.chain_id)),
    chain: (chainId, afterSeq, limit) =>
      sql.all(
        'SELECT * FROM audit_events WHERE chain_id = ? AND chain_seq > ? ORDER BY chain_seq LIMIT ?',
        [chainId, afterSeq, sqlLimit(limit)],
        T.auditEvents.withId,
      ),
  })
  const checkpoints = guarded<Pick<AuditRepo, 'putCheckpoint' | 'latestCheckpoints' | 'checkpoints'>>('audit checkpoint', {
    putCheckpoint: async (c) => {
      await sql.run(
        `${insertSql(T.auditCheckpoints)} ON CONFLICT (chain_id, chain_seq) DO UPDATE SET
        head_hash = excluded.head_hash, ts = excluded.ts, kid = excluded.kid, signature = excluded.signature`,
        T.auditCheckpoints.toParams(c),
      )
    },
    latestCheckpoints: () =>
      sql.all(
        `SELECT c.* FROM audit_checkpoints c
         JOIN (SELECT chain_id, MAX(chain_seq) AS m FROM audit_checkpoints GROUP BY chain_id) x
           ON c.chain_id = x.chain_id AND c.chain_seq = x.m
       ORDER BY c.chain_id`,
        [],
        T.auditCheckpoints.fromRow,
      ),
    checkpoints: (chainId, afterSeq, limit) =>
      sql.all(
        'SELECT * FROM audit_checkpoints WHERE chain_id = ? AND chain_seq > ? ORDER BY chain_seq LIMIT ?',
        [chainId, afterSeq, sqlLimit(limit)],
        T.auditCheckpoints.fromRow,
      ),
  })
  return {
    ...events,
    ...checkpoints,
    get appendDepth() {
      return sql.dialect.auditAppendDepth()
    },
  }
}

/**
 * The decision log's multi-row INSERT, in parts (SQLite's append thread
 * prepares it per row count): rows per statement, 23 columns each, well
 * under either database's parameter limit; a record already stored (a
 * retried upload) is skipped.
 */
export const DECISION_INSERT = {
  rowsPerInsert: 100,
  insertPrefix: `INSERT INTO decisions (${T.decisions.columns.join(', ')}) VALUES `,
  rowPlaceholders: `(${T.decisions.columns.map(() => '?').join(', ')})`,
  insertSuffix: ' ON CONFLICT (ts, id) DO NOTHING',
}

function decisionRepo(sql: Sql): DecisionRepo {
  const { rowsPerInsert, insertPrefix, rowPlaceholders, insertSuffix } = DECISION_INSERT
  const insert = (n: number): string => `${insertPrefix}${Array.from({ length: n }, () => rowPlaceholders).join(', ')}${insertSuffix}`
  const inPlace = (records: readonly DecisionRecord[]): Promise<number> =>
    sql.tx(function* () {
      let stored = 0
      for (let i = 0; i < records.length; i += rowsPerInsert) {
        const n = Math.min(rowsPerInsert, records.length - i)
        stored += yield* run(insert(n), T.flatParams(T.decisions, records, i, n))
      }
      return stored
    })
  return guarded<DecisionRepo>('decision', {
    append: async (records) => {
      if (records.length === 0) return 0
      const appendDecisions = sql.dialect.appendDecisions
      return appendDecisions ? appendDecisions(records, () => inPlace(records)) : inPlace(records)
    },
    query: (q) => {
      const { text, args } = decisionQuerySql(q, sql.dialect.decisionKinds)
      return sql.all(text, args, T.decisions.fromRow)
    },
    // In bounded chunks from the oldest: a long backlog never holds SQLite's one write lock for long.
    prune: (before, limit) =>
      sql.run('DELETE FROM decisions WHERE (ts, id) IN (SELECT ts, id FROM decisions WHERE ts < ? ORDER BY ts, id LIMIT ?)', [before, sqlLimit(limit)]),
  })
}

function revocationRepo(sql: Sql): RevocationRepo {
  const d = sql.dialect
  return guarded<RevocationRepo>('revocation', {
    add: (r) =>
      sql.tx(function* () {
        // As for audit ids: seq order is commit order, so `since(seq)` never skips an entry.
        yield* d.serialize('revocations.add')
        return (yield* one(`${insertSql(T.revocations)} RETURNING *`, T.revocations.toParams(r), T.revocations.withSeq)) as Revocation
      }),
    listActive: (now) => sql.all('SELECT * FROM revocations WHERE expires_at > ? AND lifted_at IS NULL ORDER BY seq', [now], T.revocations.withSeq),
    listActivePage: (now, afterSeq, limit, filter) => {
      const { text, args } = revocationPageSql(now, afterSeq, limit, filter)
      return sql.all(text, args, T.revocations.withSeq)
    },
    listCovering: (tokens, now) => {
      const { text, args } = revocationCoveringSql(tokens, now)
      return sql.all(text, args, T.revocations.withSeq)
    },
    listStanding: (now) =>
      sql.all(
        "SELECT * FROM revocations WHERE type IN ('agent', 'client', 'tenant') AND expires_at > ? AND lifted_at IS NULL ORDER BY seq",
        [now],
        T.revocations.withSeq,
      ),
    lift: (seq, at, by) =>
      sql.tx(function* () {
        // The lift takes the next seq, under the same lock as add(), so gateways
        // and acks see it as one more change, in commit order.
        yield* d.serialize('revocations.add')
        const cur = yield* one(
          `SELECT * FROM revocations WHERE seq = ? AND expires_at > ? AND lifted_at IS NULL${d.forUpdate}`,
          [seq, at],
          T.revocations.withSeq,
        )
        if (!cur) return null
        const liftSeq = (yield* one(d.nextRevocationSeq, [], (row) => Number(row.seq))) as number
        yield* run('UPDATE revocations SET lifted_at = ?, lifted_by = ?, lift_seq = ?, expires_at = ? WHERE seq = ?', [at, by, liftSeq, at, seq])
        return { ...cur, expiresAt: at, liftedAt: at, liftedBy: by, liftSeq }
      }),
    since: (afterSeq) => sql.all('SELECT * FROM revocations WHERE seq > ? ORDER BY seq', [afterSeq], T.revocations.withSeq),
    get: (seq) => sql.one('SELECT * FROM revocations WHERE seq = ?', [seq], T.revocations.withSeq),
    // The highest seq ever assigned, even after a purge.
    lastSeq: async () => (await sql.one(d.lastRevocationSeq, [], (r) => Number(r.seq))) ?? 0,
    purgeExpired: (now) => sql.run('DELETE FROM revocations WHERE expires_at <= ?', [now]),
  })
}

function policyRepo(sql: Sql): PolicyRepo {
  const byKey = 'SELECT * FROM policy_bundles WHERE tenant = ? AND id = ?'
  return guarded<PolicyRepo>('policy bundle', {
    create: async (p) => {
      await sql.run(insertSql(T.policies), T.policies.toParams(p))
    },
    get: (tenant, id) => sql.one(byKey, [tenant, id], T.policies.fromRow),
    list: (tenant) => sql.all('SELECT * FROM policy_bundles WHERE tenant = ? ORDER BY created_at, id', [tenant], T.policies.fromRow),
    listActive: () => sql.all("SELECT * FROM policy_bundles WHERE status = 'active' ORDER BY tenant", [], T.policies.fromRow),
    // The status as a literal: both planners then use the partial index of migration 14.
    listCandidates: () => sql.all("SELECT * FROM policy_bundles WHERE status = 'candidate' ORDER BY tenant, created_at, id", [], T.policies.fromRow),
    activate: (tenant, id, at) =>
      sql.tx(function* () {
        // Per-tenant lock first: each statement after it sees the other activation's result.
        yield* sql.dialect.serialize(`policy.activate.${tenant}`)
        if (!(yield* one(byKey, [tenant, id], T.policies.fromRow))) throw new NotFound('policy bundle not found')
        yield* run("UPDATE policy_bundles SET status = 'inactive' WHERE tenant = ? AND status = 'active' AND id <> ?", [tenant, id])
        return (yield* one(
          "UPDATE policy_bundles SET status = 'active', activated_at = ? WHERE tenant = ? AND id = ? RETURNING *",
          [at, tenant, id],
          T.policies.fromRow,
        )) as PolicyBundle
      }),
    update: (tenant, id, patch) =>
      sql.tx(function* () {
        const cur = yield* one(byKey + sql.dialect.forUpdate, [tenant, id], T.policies.fromRow)
        if (!cur) throw new NotFound('policy bundle not found')
        const next: PolicyBundle = { ...cur, ...definedOnly(patch) }
        yield* run('UPDATE policy_bundles SET status = ?, mode = ?, reviewed_at = ? WHERE tenant = ? AND id = ?', [
          next.status,
          next.mode,
          next.reviewedAt,
          tenant,
          id,
        ])
        return next
      }),
  })
}

function approvalRepo(sql: Sql): ApprovalRepo {
  return guarded<ApprovalRepo>('approval', {
    create: async (a) => {
      await sql.run(insertSql(T.approvals), T.approvals.toParams(a))
    },
    get: (id) => sql.one('SELECT * FROM approvals WHERE id = ?', [id], T.approvals.fromRow),
    findOpen: (tenant, agentId, tool, paramsHash, now) =>
      sql.one(
        `SELECT * FROM approvals WHERE tenant = ? AND agent_id = ? AND tool = ? AND params_hash = ?
         AND status = 'pending' AND expires_at > ? ORDER BY created_at DESC, id LIMIT 1`,
        [tenant, agentId, tool, paramsHash, now],
        T.approvals.fromRow,
      ),
    list: (f) => {
      const where: string[] = []
      const args: unknown[] = []
      if (f.tenant !== undefined) {
        where.push('tenant = ?')
        args.push(f.tenant)
      }
      if (f.status !== undefined) {
        where.push('status = ?')
        args.push(f.status)
      }
      args.push(sqlLimit(f.limit))
      return sql.all(`SELECT * FROM approvals${whereOf(where)} ORDER BY created_at DESC, id LIMIT ?`, args, T.approvals.fromRow)
    },
    countOpen: async (f) => {
      const where = ["status = 'pending'", 'expires_at > ?']
      const args: unknown[] = [f.now]
      if (f.tenant !== undefined) {
        where.push('tenant = ?')
        args.push(f.tenant)
      }
      if (f.agentId !== undefined) {
        where.push('agent_id = ?')
        args.push(f.agentId)
      }
      return (await sql.one(`SELECT COUNT(*) AS n FROM approvals${whereOf(where)}`, args, (r) => Number(r.n))) ?? 0
    },
    // One conditional UPDATE: a second decision finds the row no longer pending.
    decide: (id, d) =>
      sql.one(
        `UPDATE approvals SET status = ?, decided_by = ?, reason = ?, decided_at = ?, override_jti = ?
        WHERE id = ? AND status = 'pending' AND expires_at > ? RETURNING *`,
        [d.status, d.decidedBy, d.reason, d.decidedAt, d.overrideJti, id, d.decidedAt],
        T.approvals.fromRow,
      ),
    setDeliveries: async (id, deliveries) => {
      if ((await sql.run('UPDATE approvals SET deliveries = ? WHERE id = ?', [JSON.stringify(deliveries), id])) === 0) {
        throw new NotFound('approval not found')
      }
    },
    expire: async (now) =>
      (await sql.all("UPDATE approvals SET status = 'expired' WHERE status = 'pending' AND expires_at <= ? RETURNING *", [now], T.approvals.fromRow)).sort(
        (a, b) => a.createdAt - b.createdAt || a.id.localeCompare(b.id),
      ),
  })
}

function trustedIssuerRepo(sql: Sql): TrustedIssuerRepo {
  return guarded<TrustedIssuerRepo>('trusted issuer', {
    create: async (t) => {
      await sql.run(insertSql(T.trustedIssuers), T.trustedIssuers.toParams(t))
    },
    list: (tenant) => sql.all('SELECT * FROM trusted_issuers WHERE tenant = ? ORDER BY created_at, id', [tenant], T.trustedIssuers.fromRow),
    findByIssuer: (issuer) => sql.all('SELECT * FROM trusted_issuers WHERE issuer = ? ORDER BY tenant, id', [issuer], T.trustedIssuers.fromRow),
    delete: async (tenant, id) => {
      if ((await sql.run('DELETE FROM trusted_issuers WHERE tenant = ? AND id = ?', [tenant, id])) === 0) throw new NotFound('trusted issuer not found')
    },
  })
}

function gatewayAckRepo(sql: Sql): GatewayAckRepo {
  return guarded<GatewayAckRepo>('gateway ack', {
    put: async (a) => {
      await sql.run(
        `${insertSql(T.gatewayAcks)} ON CONFLICT (gateway_id) DO UPDATE SET seq = excluded.seq, updated_at = excluded.updated_at`,
        T.gatewayAcks.toParams(a),
      )
    },
    list: () => sql.all('SELECT * FROM gateway_acks ORDER BY gateway_id', [], T.gatewayAcks.fromRow),
  })
}

function consoleLogoutRepo(sql: Sql): ConsoleLogoutRepo {
  return guarded<ConsoleLogoutRepo>('console logout', {
    // DO NOTHING: two logouts racing with the same cookie, on any control plane, both succeed.
    add: async (sid, expiresAt) => {
      await sql.run('INSERT INTO console_logouts (sid, expires_at) VALUES (?, ?) ON CONFLICT (sid) DO NOTHING', [sid, expiresAt])
    },
    has: async (sid) => (await sql.one('SELECT 1 AS x FROM console_logouts WHERE sid = ?', [sid], () => true)) ?? false,
    purgeExpired: (now) => sql.run('DELETE FROM console_logouts WHERE expires_at <= ?', [now]),
  })
}

function kpiRepo(sql: Sql): KpiRepo {
  const add = `INSERT INTO kpi_counts (tenant, slot, metric, n) VALUES (?, ?, ?, ?)
    ON CONFLICT (tenant, slot, metric) DO UPDATE SET n = kpi_counts.n + excluded.n`
  return guarded<KpiRepo>('kpi count', {
    add: async (counts) => {
      if (counts.length === 0) return
      // Rows locked in one order by every control plane: concurrent flushes wait, never deadlock.
      const sorted = [...counts].sort((a, b) =>
        a.tenant < b.tenant ? -1 : a.tenant > b.tenant ? 1 : a.slot - b.slot || (a.metric < b.metric ? -1 : a.metric > b.metric ? 1 : 0),
      )
      await sql.tx(function* () {
        for (const c of sorted) yield* run(add, [c.tenant, c.slot, c.metric, c.n])
      })
    },
    read: (tenant, fromSlot) =>
      sql.all('SELECT tenant, slot, metric, n FROM kpi_counts WHERE tenant = ? AND (slot = 0 OR slot >= ?)', [tenant, fromSlot], (r) => ({
        tenant: String(r.tenant),
        slot: Number(r.slot),
        metric: String(r.metric),
        n: Number(r.n),
      })),
    prune: (beforeSlot) => sql.run('DELETE FROM kpi_counts WHERE slot > 0 AND slot < ?', [beforeSlot]),
  })
}

/**
 * A store over one SQL executor: the repositories are the same for every
 * database; a subclass brings the connection, `tryWithLock` and `close`.
 */
export abstract class SqlStore implements Store {
  abstract readonly kind: Store['kind']
  readonly tenants: TenantRepo
  readonly agents: AgentRepo
  readonly credentials: CredentialRepo
  readonly adminTokens: AdminTokenRepo
  readonly manifests: ManifestRepo
  readonly keys: KeyRepo
  readonly audit: AuditRepo
  readonly decisions: DecisionRepo
  readonly revocations: RevocationRepo
  readonly policies: PolicyRepo
  readonly approvals: ApprovalRepo
  readonly trustedIssuers: TrustedIssuerRepo
  readonly gatewayAcks: GatewayAckRepo
  readonly consoleLogouts: ConsoleLogoutRepo
  readonly kpis: KpiRepo

  constructor(sql: Sql) {
    this.tenants = tenantRepo(sql)
    this.agents = agentRepo(sql)
    this.credentials = credentialRepo(sql)
    this.adminTokens = adminTokenRepo(sql)
    this.manifests = manifestRepo(sql)
    this.keys = keyRepo(sql)
    this.audit = auditRepo(sql)
    this.decisions = decisionRepo(sql)
    this.revocations = revocationRepo(sql)
    this.policies = policyRepo(sql)
    this.approvals = approvalRepo(sql)
    this.trustedIssuers = trustedIssuerRepo(sql)
    this.gatewayAcks = gatewayAckRepo(sql)
    this.consoleLogouts = consoleLogoutRepo(sql)
    this.kpis = kpiRepo(sql)
  }

  abstract tryWithLock<R>(name: string, fn: () => Promise<R>): Promise<{ ran: true; value: R } | { ran: false }>
  abstract close(): Promise<void>
}
