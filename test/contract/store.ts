/**
 * One contract suite for every Store backend (SQLite, PostgreSQL): each repo
 * method and each guarantee src/store/types.ts documents. A backend passes
 * `create`, which opens a fresh, empty store; `reopen` (when given) opens a
 * second Store on the same database, as a second control plane would.
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { AegisError, Conflict, NotFound } from '../../src/errors.js'
import { REVOCATION_PERMANENT } from '../../src/store/types.js'
import type {
  AdminToken,
  Agent,
  Approval,
  AuditEvent,
  BootstrapCredential,
  PolicyBundle,
  Revocation,
  SigningKey,
  Store,
  Tenant,
  TrustedIssuer,
} from '../../src/store/types.js'

/** What a backend hands the suite. */
export interface StoreHandle {
  store: Store
  /** Closes every store opened and removes the database. */
  cleanup: () => Promise<void>
  /** Another Store on the same database (a second control plane); closed by cleanup. */
  reopen?: () => Promise<Store>
}

const T0 = 1_700_000_000_000

function tenant(id: string, over: Partial<Tenant> = {}): Tenant {
  return { id, name: `Tenant ${id}`, requireAttestation: false, createdAt: T0, ...over }
}

function agent(t: string, agentId: string, over: Partial<Agent> = {}): Agent {
  return {
    tenant: t,
    agentId,
    clientId: `ag_${t}_${agentId}`,
    scopes: ['read', 'write'],
    capabilities: ['search', 'send_email'],
    schemas: null,
    maxTtlSeconds: 600,
    audiences: ['aegis-gateway'],
    tokenEndpointAuthMethod: 'client_secret_basic',
    jwks: null,
    tlsClientAuthSubjectDn: null,
    tlsClientAuthSanUri: null,
    tlsClientAuthSanDns: null,
    tlsClientAuthThumbprint: null,
    capabilityHash: 'cap-hash',
    createdAt: T0,
    updatedAt: T0,
    ...over,
  }
}

function credential(clientId: string, t: string, agentId: string, over: Partial<BootstrapCredential> = {}): BootstrapCredential {
  return { clientId, tenant: t, agentId, secretHash: `hash-${clientId}`, expiresAt: T0 + 3_600_000, singleUse: true, usedAt: null, createdAt: T0, ...over }
}

function adminToken(id: string, over: Partial<AdminToken> = {}): AdminToken {
  return { id, tenant: null, role: 'admin', name: id, tokenHash: `th-${id}`, linkedIdentities: [], groups: [], createdAt: T0, revokedAt: null, ...over }
}

function key(kid: string, over: Partial<SigningKey> = {}): SigningKey {
  return {
    kid,
    alg: 'EdDSA',
    state: 'next',
    publicJwk: { kty: 'OKP', crv: 'Ed25519', x: `x-${kid}`, kid },
    encryptedPrivateKey: `enc-${kid}`,
    createdAt: T0,
    activatesAt: T0 + 1000,
    deactivatedAt: null,
    retiresAt: null,
    revoked: false,
    ...over,
  }
}

function event(chainId: string, chainSeq: number, over: Partial<Omit<AuditEvent, 'id'>> = {}): Omit<AuditEvent, 'id'> {
  return {
    chainId,
    chainSeq,
    type: 'token.issued',
    tenant: 'acme',
    actor: 'client:c1',
    subject: `jti-${chainId}-${chainSeq}`,
    data: { n: chainSeq, nested: { ok: true, list: [1, 'two', null] } },
    ts: T0 + chainSeq,
    prevHash: `h${chainSeq - 1}`,
    hash: `h${chainSeq}`,
    ...over,
  }
}

function revocation(value: string, over: Partial<Omit<Revocation, 'seq'>> = {}): Omit<Revocation, 'seq'> {
  return { type: 'jti', value, tenant: 'acme', agentId: null, reason: 'test', createdAt: T0, expiresAt: T0 + 60_000, ...over }
}

function policy(id: string, t: string, version: string, over: Partial<PolicyBundle> = {}): PolicyBundle {
  return {
    id,
    tenant: t,
    version,
    cedar: 'permit(principal, action, resource);',
    mode: 'enforce',
    status: 'inactive',
    createdAt: T0,
    activatedAt: null,
    reviewedAt: null,
    ...over,
  }
}

function approval(id: string, over: Partial<Approval> = {}): Approval {
  return {
    id,
    tenant: 'acme',
    agentId: 'bot',
    tool: 'send_email',
    paramsCanonical: '{"to":"a@b.c"}',
    paramsHash: 'ph1',
    resource: null,
    requestCanonical: null,
    policyId: 'p1',
    policyVersion: 'v1',
    group: 'finance',
    requireConsole: false,
    status: 'pending',
    createdAt: T0,
    expiresAt: T0 + 900_000,
    decidedAt: null,
    decidedBy: null,
    reason: null,
    overrideJti: null,
    deliveries: [],
    ...over,
  }
}

function issuer(id: string, t: string, iss: string): TrustedIssuer {
  return {
    id,
    tenant: t,
    issuer: iss,
    jwksUri: `${iss}/jwks`,
    jwks: null,
    audience: 'aegis',
    rules: [{ claims: { sub: 'system:serviceaccount:ns:bot' }, agentId: 'bot' }],
    createdAt: T0,
  }
}

/** Rejects with an AegisError of `cls` (never a driver error). */
async function rejectsWith(p: Promise<unknown>, cls: typeof Conflict | typeof NotFound): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof AegisError, `expected an AegisError, got ${String(err)}`)
    assert.ok(err instanceof cls, `expected ${cls.name}, got ${(err as Error).name}: ${(err as Error).message}`)
    return true
  })
}

/** Resolves when `fn` is running; `release()` lets it finish. */
function gate(): { entered: Promise<void>; enter: () => void; released: Promise<void>; release: () => void } {
  let enter!: () => void
  let release!: () => void
  const entered = new Promise<void>((r) => {
    enter = r
  })
  const released = new Promise<void>((r) => {
    release = r
  })
  return { entered, enter, released, release }
}

/**
 * Registers the Store contract tests for one backend. `create` must give a
 * fresh, empty store each time it is called.
 */
export function storeContract(name: string, create: () => Promise<StoreHandle>, opts: { skip?: string | false } = {}): void {
  const skip = opts.skip ?? false

  /** Runs `fn` against a fresh store and always cleans up. */
  async function withStore(fn: (s: Store, h: StoreHandle) => Promise<void>): Promise<void> {
    const h = await create()
    try {
      await fn(h.store, h)
    } finally {
      await h.cleanup()
    }
  }

  describe(`Store contract: ${name}`, { skip }, () => {
    test('kind names the backend', () =>
      withStore(async (s) => {
        assert.ok(s.kind === 'sqlite' || s.kind === 'postgres')
      }))

    test('tenants: create, get, list, update, delete; duplicates conflict, missing ones are not found', () =>
      withStore(async (s) => {
        assert.equal(await s.tenants.get('acme'), null)
        await s.tenants.create(tenant('acme'))
        await s.tenants.create(tenant('beta', { requireAttestation: true, createdAt: T0 + 1 }))
        await rejectsWith(s.tenants.create(tenant('acme', { name: 'again' })), Conflict)
        assert.deepEqual(await s.tenants.get('acme'), tenant('acme'))
        assert.deepEqual(
          (await s.tenants.list()).map((t) => t.id),
          ['acme', 'beta'],
        )
        assert.equal((await s.tenants.get('beta'))?.requireAttestation, true)

        const updated = await s.tenants.update('acme', { name: 'Acme Corp', requireAttestation: true })
        assert.deepEqual(updated, { ...tenant('acme'), name: 'Acme Corp', requireAttestation: true })
        assert.deepEqual(await s.tenants.get('acme'), updated)
        const partly = await s.tenants.update('acme', { requireAttestation: false })
        assert.equal(partly.name, 'Acme Corp', 'a patch leaves omitted fields alone')
        await rejectsWith(s.tenants.update('nope', { name: 'x' }), NotFound)

        await s.tenants.delete('beta')
        assert.equal(await s.tenants.get('beta'), null)
        await rejectsWith(s.tenants.delete('beta'), NotFound)
      }))

    test('agents: create, lookups, list, update, delete; (tenant, agentId) and clientId are unique', () =>
      withStore(async (s) => {
        await s.tenants.create(tenant('acme'))
        await s.tenants.create(tenant('beta'))
        const a = agent('acme', 'bot', {
          schemas: { send_email: { type: 'object', properties: { to: { type: 'string' } } } },
          jwks: { keys: [{ kty: 'OKP', crv: 'Ed25519', x: 'abc' }] },
          tokenEndpointAuthMethod: 'private_key_jwt',
          tlsClientAuthThumbprint: 'thumb',
        })
        await s.agents.create(a)
        await s.agents.create(agent('acme', 'helper'))
        await s.agents.create(agent('beta', 'bot'))
        assert.deepEqual(await s.agents.get('acme', 'bot'), a)
        assert.deepEqual(await s.agents.getByClientId(a.clientId), a)
        assert.equal(await s.agents.get('acme', 'ghost'), null)
        assert.equal(await s.agents.getByClientId('ag_none'), null)
        assert.deepEqual(
          (await s.agents.list('acme')).map((x) => x.agentId),
          ['bot', 'helper'],
        )
        assert.deepEqual((await s.agents.listAll()).map((x) => `${x.tenant}/${x.agentId}`).sort(), ['acme/bot', 'acme/helper', 'beta/bot'])

        await rejectsWith(s.agents.create(agent('acme', 'bot', { clientId: 'ag_other' })), Conflict)
        await rejectsWith(s.agents.create(agent('acme', 'other', { clientId: a.clientId })), Conflict)

        const u = await s.agents.update('acme', 'bot', { scopes: ['read'], schemas: null, maxTtlSeconds: 60, capabilityHash: 'h2' }, T0 + 5)
        assert.deepEqual(u, { ...a, scopes: ['read'], schemas: null, maxTtlSeconds: 60, capabilityHash: 'h2', updatedAt: T0 + 5 })
        assert.deepEqual(await s.agents.get('acme', 'bot'), u)
        await rejectsWith(s.agents.update('acme', 'ghost', { scopes: [] }, T0), NotFound)

        await s.agents.delete('acme', 'helper')
        assert.equal(await s.agents.get('acme', 'helper'), null)
        await rejectsWith(s.agents.delete('acme', 'helper'), NotFound)
      }))

    test("agents.listHashesPage pages every agent's hash in (tenant, agentId) order", () =>
      withStore(async (s) => {
        await s.tenants.create(tenant('acme'))
        await s.tenants.create(tenant('beta'))
        for (const [t, id] of [
          ['beta', 'a'],
          ['acme', 'z'],
          ['acme', 'b'],
          ['acme', 'c'],
          ['beta', 'b'],
        ] as const)
          await s.agents.create(agent(t, id, { clientId: `ag_${t}_${id}`, capabilityHash: `h-${t}-${id}` }))
        const seen: string[] = []
        let after: { tenant: string; agentId: string } | null = null
        for (;;) {
          const page: Array<{ tenant: string; agentId: string; capabilityHash: string }> = await s.agents.listHashesPage(after, 2)
          if (page.length === 0) break
          assert.ok(page.length <= 2)
          for (const a of page) seen.push(`${a.tenant}/${a.agentId}=${a.capabilityHash}`)
          after = page.at(-1)!
        }
        assert.deepEqual(seen, ['acme/b=h-acme-b', 'acme/c=h-acme-c', 'acme/z=h-acme-z', 'beta/a=h-beta-a', 'beta/b=h-beta-b'])
      }))

    test('agents need their tenant; deleting a tenant removes its agents and their credentials', () =>
      withStore(async (s) => {
        await rejectsWith(s.agents.create(agent('ghost', 'bot')), NotFound)
        await s.tenants.create(tenant('acme'))
        await s.agents.create(agent('acme', 'bot'))
        await s.credentials.create(credential('bc_1', 'acme', 'bot'))
        await s.tenants.delete('acme')
        assert.equal(await s.agents.get('acme', 'bot'), null)
        assert.equal(await s.credentials.get('bc_1'), null)
      }))

    test('credentials: create, get, deleteForAgent; a duplicate client id conflicts', () =>
      withStore(async (s) => {
        await s.tenants.create(tenant('acme'))
        await s.agents.create(agent('acme', 'bot'))
        await s.agents.create(agent('acme', 'other'))
        const c = credential('bc_1', 'acme', 'bot', { singleUse: false })
        await s.credentials.create(c)
        await s.credentials.create(credential('bc_2', 'acme', 'bot'))
        await s.credentials.create(credential('bc_3', 'acme', 'other'))
        assert.deepEqual(await s.credentials.get('bc_1'), c)
        assert.equal(await s.credentials.get('bc_none'), null)
        await rejectsWith(s.credentials.create(credential('bc_1', 'acme', 'bot')), Conflict)
        await rejectsWith(s.credentials.create(credential('bc_9', 'acme', 'ghost')), NotFound)
        await s.credentials.deleteForAgent('acme', 'bot')
        assert.equal(await s.credentials.get('bc_1'), null)
        assert.equal(await s.credentials.get('bc_2'), null)
        assert.notEqual(await s.credentials.get('bc_3'), null, 'other agents keep theirs')
        await s.credentials.deleteForAgent('acme', 'nobody')
      }))

    test('credentials.consume: exactly one of many concurrent callers wins', () =>
      withStore(async (s, h) => {
        await s.tenants.create(tenant('acme'))
        await s.agents.create(agent('acme', 'bot'))
        await s.credentials.create(credential('bc_1', 'acme', 'bot'))
        const other = h.reopen ? await h.reopen() : s
        const results = await Promise.all(Array.from({ length: 24 }, (_, i) => (i % 2 ? other : s).credentials.consume('bc_1', T0 + i)))
        assert.equal(results.filter(Boolean).length, 1)
        const used = await s.credentials.get('bc_1')
        assert.equal(used?.usedAt, T0 + results.indexOf(true))
        assert.equal(await s.credentials.consume('bc_1', T0 + 99), false)
        assert.equal(await s.credentials.consume('bc_missing', T0), false)
      }))

    test('admin tokens: create, lookups, list by scope, revoke', () =>
      withStore(async (s) => {
        const g = adminToken('at_g', { groups: ['finance'], linkedIdentities: ['slack:T1/U1'] })
        const t = adminToken('at_t', { tenant: 'acme', role: 'approver', createdAt: T0 + 1 })
        const gw = adminToken('at_gw', { role: 'gateway', createdAt: T0 + 2 })
        for (const x of [g, t, gw]) await s.adminTokens.create(x)
        await rejectsWith(s.adminTokens.create(adminToken('at_g', { tokenHash: 'other' })), Conflict)
        await rejectsWith(s.adminTokens.create(adminToken('at_x', { tokenHash: g.tokenHash })), Conflict)
        assert.deepEqual(await s.adminTokens.getByHash(g.tokenHash), g)
        assert.deepEqual(await s.adminTokens.get('at_t'), t)
        assert.equal(await s.adminTokens.get('at_none'), null)
        assert.equal(await s.adminTokens.getByHash('nohash'), null)
        assert.deepEqual(
          (await s.adminTokens.list()).map((x) => x.id),
          ['at_g', 'at_t', 'at_gw'],
        )
        assert.deepEqual(
          (await s.adminTokens.list(null)).map((x) => x.id),
          ['at_g', 'at_gw'],
        )
        assert.deepEqual(
          (await s.adminTokens.list('acme')).map((x) => x.id),
          ['at_t'],
        )
        assert.deepEqual(await s.adminTokens.list('beta'), [])
        await s.adminTokens.revoke('at_t', T0 + 10)
        assert.equal((await s.adminTokens.get('at_t'))?.revokedAt, T0 + 10)
        await rejectsWith(s.adminTokens.revoke('at_none', T0), NotFound)
      }))

    test('manifests: put is idempotent, get returns the stored JSON or null', () =>
      withStore(async (s) => {
        const m = { tools: [{ name: 'search', risk: 'read' }], version: 1 }
        await s.manifests.put('mh1', m)
        await s.manifests.put('mh1', m)
        assert.deepEqual(await s.manifests.get('mh1'), m)
        assert.equal(await s.manifests.get('mh2'), null)
      }))

    test('keys: insert, list, update; a duplicate kid conflicts, an unknown one is not found', () =>
      withStore(async (s) => {
        const k1 = key('k1', { state: 'current' })
        const k2 = key('k2', { createdAt: T0 + 1 })
        await s.keys.insert(k1)
        await s.keys.insert(k2)
        await rejectsWith(s.keys.insert(key('k1')), Conflict)
        assert.deepEqual(await s.keys.list(), [k1, k2])
        await s.keys.update('k1', { state: 'previous', deactivatedAt: T0 + 5, retiresAt: T0 + 10 })
        await s.keys.update('k2', { state: 'current' })
        assert.deepEqual(await s.keys.list(), [
          { ...k1, state: 'previous', deactivatedAt: T0 + 5, retiresAt: T0 + 10 },
          { ...k2, state: 'current' },
        ])
        await s.keys.update('k1', { state: 'retired', revoked: true })
        assert.equal((await s.keys.list())[0]?.revoked, true)
        await rejectsWith(s.keys.update('k9', { state: 'retired' }), NotFound)
      }))

    test('audit: append assigns increasing ids, head and chain read back what was written', () =>
      withStore(async (s) => {
        assert.equal(await s.audit.head('cp-a'), null)
        assert.deepEqual(await s.audit.append([]), [])
        const batch = [event('cp-a', 1), event('cp-a', 2, { tenant: null, actor: null, subject: null, data: {} }), event('cp-a', 3)]
        const ids = await s.audit.append(batch)
        assert.equal(ids.length, 3)
        assert.ok(ids[0]! < ids[1]! && ids[1]! < ids[2]!, `ids increase: ${ids.join(',')}`)
        const ids2 = await s.audit.append([event('cp-b', 1, { type: 'key.rotated', tenant: null })])
        assert.ok(ids2[0]! > ids[2]!)
        assert.deepEqual(await s.audit.head('cp-a'), batch[2])
        const chain = await s.audit.chain('cp-a', 0, 100)
        assert.deepEqual(
          chain,
          batch.map((e, i) => ({ ...e, id: ids[i]! })),
        )
        assert.deepEqual(
          (await s.audit.chain('cp-a', 1, 1)).map((e) => e.chainSeq),
          [2],
        )
        assert.deepEqual(await s.audit.chain('cp-a', 3, 10), [])
        assert.deepEqual(await s.audit.chains(), ['cp-a', 'cp-b'])
      }))

    test('audit: a batch is all or none; a repeated (chain, seq) conflicts', () =>
      withStore(async (s) => {
        await s.audit.append([event('cp-a', 1)])
        await rejectsWith(s.audit.append([event('cp-a', 2), event('cp-a', 1)]), Conflict)
        assert.deepEqual(
          (await s.audit.chain('cp-a', 0, 10)).map((e) => e.chainSeq),
          [1],
          'the failed batch left nothing',
        )
        assert.equal((await s.audit.head('cp-a'))?.chainSeq, 1)
        // Past one INSERT's rows (SQLite writes such a batch as several INSERTs in one transaction): still all or none.
        const long = Array.from({ length: 70 }, (_, i) => event('cp-a', i + 2))
        await rejectsWith(s.audit.append([...long, event('cp-a', 1)]), Conflict)
        assert.equal((await s.audit.head('cp-a'))?.chainSeq, 1, 'the failed long batch left nothing')
        const ids = await s.audit.append(long)
        assert.ok(
          ids.every((id, i) => i === 0 || id > ids[i - 1]!),
          'ids increase',
        )
        assert.deepEqual(
          (await s.audit.chain('cp-a', 0, 100)).map((e) => [e.id, e.chainSeq]),
          [[(await s.audit.chain('cp-a', 0, 1))[0]!.id, 1], ...ids.map((id, i) => [id, i + 2])],
        )
      }))

    test('audit: a batch that names the head it follows is written only onto that head', () =>
      withStore(async (s) => {
        await rejectsWith(s.audit.append([event('cp-f', 1)], { follows: { seq: 1, hash: 'h1' } }), Conflict)
        assert.deepEqual(await s.audit.append([event('cp-f', 1)], { follows: { seq: 0, hash: 'h0' } }).then((ids) => ids.length), 1)
        // Another seq, or the right seq with another hash: refused, nothing written.
        await rejectsWith(s.audit.append([event('cp-f', 2)], { follows: { seq: 0, hash: 'h0' } }), Conflict)
        await rejectsWith(s.audit.append([event('cp-f', 2)], { follows: { seq: 1, hash: 'not-h1' } }), Conflict)
        await rejectsWith(s.audit.append([event('cp-f', 3), event('cp-f', 4)], { follows: { seq: 2, hash: 'h2' } }), Conflict)
        assert.deepEqual(
          (await s.audit.chain('cp-f', 0, 10)).map((e) => e.chainSeq),
          [1],
        )
        await s.audit.append([event('cp-f', 2), event('cp-f', 3)], { follows: { seq: 1, hash: 'h1' } })
        assert.equal((await s.audit.head('cp-f'))?.chainSeq, 3)
        assert.ok(s.audit.appendDepth >= 1)
      }))

    test('audit: concurrent batches from two writers all land with distinct ids', () =>
      withStore(async (s, h) => {
        const other = h.reopen ? await h.reopen() : s
        const batches = Array.from({ length: 10 }, (_, b) => Array.from({ length: 20 }, (_, i) => event(`cp-${b % 2}`, Math.floor(b / 2) * 20 + i + 1)))
        const ids = (await Promise.all(batches.map((batch, b) => (b % 2 ? other : s).audit.append(batch)))).flat()
        assert.equal(new Set(ids).size, 200)
        const all = await s.audit.query({ limit: 1000 })
        assert.equal(all.length, 200)
        for (const chainId of ['cp-0', 'cp-1']) {
          assert.deepEqual(
            (await s.audit.chain(chainId, 0, 1000)).map((e) => e.chainSeq),
            Array.from({ length: 100 }, (_, i) => i + 1),
          )
        }
      }))

    test('audit.query filters by type, tenant and since, and pages by cursor', () =>
      withStore(async (s) => {
        const evs = Array.from({ length: 25 }, (_, i) =>
          event('cp-a', i + 1, {
            type: i % 3 === 0 ? 'auth.failed' : 'token.issued',
            tenant: i % 2 === 0 ? 'acme' : 'beta',
            ts: T0 + i * 1000,
          }),
        )
        const ids = await s.audit.append(evs)
        const all = await s.audit.query({ limit: 100 })
        assert.deepEqual(
          all.map((e) => e.id),
          ids,
        )

        const byType = await s.audit.query({ type: 'auth.failed', limit: 100 })
        assert.deepEqual(
          byType.map((e) => e.chainSeq),
          evs.filter((e) => e.type === 'auth.failed').map((e) => e.chainSeq),
        )
        const byTenant = await s.audit.query({ tenant: 'beta', limit: 100 })
        assert.ok(byTenant.length > 0 && byTenant.every((e) => e.tenant === 'beta'))
        assert.equal(byTenant.length, evs.filter((e) => e.tenant === 'beta').length)
        const since = await s.audit.query({ since: T0 + 20_000, limit: 100 })
        assert.deepEqual(
          since.map((e) => e.ts),
          [20, 21, 22, 23, 24].map((i) => T0 + i * 1000),
        )
        const combined = await s.audit.query({ type: 'token.issued', tenant: 'acme', since: T0 + 10_000, limit: 100 })
        assert.deepEqual(
          combined.map((e) => e.chainSeq),
          evs.filter((e) => e.type === 'token.issued' && e.tenant === 'acme' && e.ts >= T0 + 10_000).map((e) => e.chainSeq),
        )

        const pages: number[][] = []
        let cursor: number | undefined
        for (;;) {
          const page = await s.audit.query({ limit: 10, ...(cursor !== undefined ? { cursor } : {}) })
          if (page.length === 0) break
          assert.ok(page.length <= 10)
          pages.push(page.map((e) => e.id))
          cursor = page[page.length - 1]!.id
        }
        assert.deepEqual(
          pages.map((p) => p.length),
          [10, 10, 5],
        )
        assert.deepEqual(pages.flat(), ids)
        const tenantPage = await s.audit.query({ tenant: 'acme', cursor: ids[10]!, limit: 3 })
        assert.deepEqual(await s.audit.query({ limit: 0 }), [])
        assert.deepEqual(await s.audit.query({ limit: Number.NaN }), [], 'a nonsense limit returns nothing rather than everything')
        assert.equal((await s.audit.query({ limit: Number.POSITIVE_INFINITY })).length, 25)
        assert.deepEqual(
          tenantPage.map((e) => e.chainSeq),
          [13, 15, 17],
        )
      }))

    test("audit.query with since: exactly the events at or after it by their writer's clock, in id order, paged by id both ways", () =>
      withStore(async (s) => {
        // Two writers whose clocks are 7 s apart, appending in turns: the id (commit) order is not the ts order.
        const evs = Array.from({ length: 30 }, (_, i) =>
          event(i % 2 ? 'cp-slow' : 'cp-fast', Math.floor(i / 2) + 1, {
            type: i % 3 === 0 ? 'auth.failed' : 'token.issued',
            tenant: i % 4 === 0 ? 'beta' : 'acme',
            ts: T0 + i * 1000 + (i % 2 ? -7000 : 0) + (i % 5 === 0 ? 500 : 0),
          }),
        )
        // One event per append, as writers commit in turns; then a batch of three, newest first.
        const ids: number[] = []
        for (const e of evs) ids.push(...(await s.audit.append([e])))
        const batch = [3, 1, 2].map((k, i) => event('cp-batch', i + 1, { type: 'token.issued', tenant: 'acme', ts: T0 + 30_000 + k * 1500 }))
        ids.push(...(await s.audit.append(batch)))
        const stored = [...evs, ...batch].map((e, i) => ({ ...e, id: ids[i]! }))
        for (const [what, filter] of [
          ['since', {}],
          ['type + since', { type: 'token.issued' }],
          ['tenant + since', { tenant: 'acme' }],
          ['tenant + type + since', { tenant: 'acme', type: 'token.issued' }],
        ] as const) {
          for (const since of [T0 + 9000, T0 + 9500, T0 + 31_600, T0]) {
            const want = stored.filter((e) => e.ts >= since && Object.entries(filter).every(([k, v]) => (e as Record<string, unknown>)[k] === v))
            if (since === T0 + 9000) {
              assert.ok(
                stored.some((e) => e.ts < since && e.id > want[0]!.id),
                `${what}: the case needs events before since that were written after events at or after it`,
              )
            }
            for (const order of ['asc', 'desc'] as const) {
              const seen: number[] = []
              let cursor: number | undefined
              for (let guard = 0; guard < 50; guard++) {
                const page = await s.audit.query({ ...filter, since, order, limit: 4, ...(cursor !== undefined ? { cursor } : {}) })
                seen.push(...page.map((e) => e.id))
                if (page.length < 4) break
                cursor = page[3]!.id
              }
              const expected = want.map((e) => e.id)
              assert.deepEqual(seen, order === 'asc' ? expected : expected.reverse(), `${what} from ${since - T0} ms, ${order}`)
            }
          }
        }
        // The events themselves, as stored; nothing is at or after the newest ts but the newest.
        assert.deepEqual(
          await s.audit.query({ since: T0 + 28_000, limit: 10 }),
          stored.filter((e) => e.ts >= T0 + 28_000),
        )
        assert.deepEqual(await s.audit.query({ since: T0 + 34_501, limit: 10 }), [])
        assert.deepEqual(
          (await s.audit.query({ since: T0 + 34_500, limit: 10 })).map((e) => e.id),
          [ids[30]!],
        )
      }))

    test('audit checkpoints: the latest per chain wins', () =>
      withStore(async (s) => {
        assert.deepEqual(await s.audit.latestCheckpoints(), [])
        const cp = (chainId: string, chainSeq: number) => ({
          chainId,
          chainSeq,
          headHash: `h${chainSeq}`,
          ts: T0 + chainSeq,
          kid: 'k1',
          signature: `sig-${chainId}-${chainSeq}`,
        })
        await s.audit.putCheckpoint(cp('cp-a', 5))
        await s.audit.putCheckpoint(cp('cp-a', 9))
        await s.audit.putCheckpoint(cp('cp-b', 2))
        await s.audit.putCheckpoint(cp('cp-a', 7))
        assert.deepEqual(await s.audit.latestCheckpoints(), [cp('cp-a', 9), cp('cp-b', 2)])
        // Re-signing the same head (e.g. after a key rotation) replaces it.
        await s.audit.putCheckpoint({ ...cp('cp-b', 2), kid: 'k2', signature: 'resigned' })
        assert.deepEqual((await s.audit.latestCheckpoints())[1], { ...cp('cp-b', 2), kid: 'k2', signature: 'resigned' })
        // Every checkpoint of a chain, in chain_seq order, paged (aegis audit verify checks them all).
        assert.deepEqual(await s.audit.checkpoints('cp-a', 0, 10), [cp('cp-a', 5), cp('cp-a', 7), cp('cp-a', 9)])
        assert.deepEqual(await s.audit.checkpoints('cp-a', 5, 1), [cp('cp-a', 7)])
        assert.deepEqual(await s.audit.checkpoints('cp-none', 0, 10), [])
      }))

    test('revocations: seq strictly increasing, since, get, lastSeq', () =>
      withStore(async (s, h) => {
        assert.equal(await s.revocations.lastSeq(), 0)
        assert.deepEqual(await s.revocations.since(0), [])
        const first = await s.revocations.add(revocation('j1', { type: 'issued_before', value: String(T0), agentId: 'bot' }))
        assert.deepEqual(first, { ...revocation('j1', { type: 'issued_before', value: String(T0), agentId: 'bot' }), seq: first.seq })
        assert.ok(first.seq > 0)
        const other = h.reopen ? await h.reopen() : s
        const added = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? other : s).revocations.add(revocation(`c${i}`))))
        const seqs = added.map((r) => r.seq)
        assert.equal(new Set(seqs).size, 20)
        assert.ok(seqs.every((x) => x > first.seq))
        const since = await s.revocations.since(first.seq)
        assert.deepEqual(
          since.map((r) => r.seq),
          [...seqs].sort((a, b) => a - b),
        )
        for (let i = 1; i < since.length; i++) assert.ok(since[i]!.seq > since[i - 1]!.seq)
        assert.equal(await s.revocations.lastSeq(), Math.max(...seqs))
        assert.deepEqual(await s.revocations.get(first.seq), first)
        assert.equal(await s.revocations.get(999_999), null)
        const mid = since[9]!.seq
        assert.deepEqual(
          (await s.revocations.since(mid)).map((r) => r.seq),
          since.slice(10).map((r) => r.seq),
        )
      }))

    test('revocations: listActive and purgeExpired; a purged seq is never reused', () =>
      withStore(async (s) => {
        const a = await s.revocations.add(revocation('old', { expiresAt: T0 + 1000 }))
        const b = await s.revocations.add(revocation('live', { expiresAt: T0 + 5000 }))
        const c = await s.revocations.add(revocation('later', { type: 'kid', value: 'k1', tenant: null, expiresAt: T0 + 9000 }))
        assert.deepEqual(
          (await s.revocations.listActive(T0)).map((r) => r.seq),
          [a.seq, b.seq, c.seq],
        )
        assert.deepEqual(
          (await s.revocations.listActive(T0 + 1000)).map((r) => r.value),
          ['live', 'k1'],
          'expiresAt is exclusive',
        )
        assert.equal(await s.revocations.purgeExpired(T0 + 5000), 2)
        assert.deepEqual(
          (await s.revocations.listActive(T0)).map((r) => r.seq),
          [c.seq],
        )
        assert.equal(await s.revocations.purgeExpired(T0 + 10_000), 1)
        assert.equal(await s.revocations.lastSeq(), c.seq, 'lastSeq survives a purge')
        const d = await s.revocations.add(revocation('new'))
        assert.ok(d.seq > c.seq)
      }))

    test('revocations.listCovering: the live entries naming one of the tokens, and every live issued_before entry', () =>
      withStore(async (s) => {
        const forever = { expiresAt: REVOCATION_PERMANENT }
        const made = [
          await s.revocations.add(revocation('j-1')),
          await s.revocations.add(revocation('j-2')),
          await s.revocations.add(revocation('j-old', { expiresAt: T0 + 1 })),
          await s.revocations.add(revocation('bot', { type: 'agent', ...forever })),
          await s.revocations.add(revocation('bot', { type: 'agent', tenant: 'globex', ...forever })),
          await s.revocations.add(revocation('other-bot', { type: 'agent', ...forever })),
          await s.revocations.add(revocation('c-1', { type: 'client', ...forever })),
          await s.revocations.add(revocation('acme', { type: 'tenant', ...forever })),
          await s.revocations.add(revocation('k-1', { type: 'kid', tenant: null })),
          await s.revocations.add(revocation(String(T0 / 1000), { type: 'issued_before', tenant: 'globex' })),
          await s.revocations.add(revocation('j-3')),
        ]
        const lifted = await s.revocations.add(revocation('c-2', { type: 'client', ...forever }))
        await s.revocations.lift(lifted.seq, T0 + 5, 'admin:test')
        const tokens = [
          { jti: 'j-1', tenant: 'acme', agentId: 'bot', clientId: 'c-1', kid: 'k-1', iat: T0 / 1000 },
          { jti: 'j-old', tenant: 'initech', agentId: 'nobody', clientId: 'c-2', kid: 'k-9', iat: T0 / 1000 },
          { jti: 'j-3', tenant: 'acme', agentId: '', clientId: '', kid: '', iat: T0 / 1000 },
        ]
        const named = new Set(made.filter((r) => ['j-1', 'j-3', 'bot', 'c-1', 'acme', 'k-1', String(T0 / 1000)].includes(r.value)).map((r) => r.seq))
        assert.deepEqual(
          (await s.revocations.listCovering(tokens, T0 + 10)).map((r) => r.seq),
          made.filter((r) => named.has(r.seq)).map((r) => r.seq),
          'j-2, other-bot, the expired j-old and the lifted c-2 are not read',
        )
        assert.deepEqual(await s.revocations.listCovering([], T0 + 10), [made[9]])
      }))

    test('revocations.listActivePage pages listActive by seq', () =>
      withStore(async (s) => {
        const made = []
        for (let i = 0; i < 5; i++) made.push(await s.revocations.add(revocation(`p${i}`, { expiresAt: i === 2 ? T0 + 1 : T0 + 9000 })))
        const live = made.filter((_, i) => i !== 2).map((r) => r.seq)
        const first = await s.revocations.listActivePage(T0 + 10, 0, 2)
        assert.deepEqual(
          first.map((r) => r.seq),
          live.slice(0, 2),
        )
        assert.deepEqual(first[0], made[0])
        const second = await s.revocations.listActivePage(T0 + 10, first.at(-1)!.seq, 2)
        assert.deepEqual(
          second.map((r) => r.seq),
          live.slice(2, 4),
          'an expired entry is skipped',
        )
        assert.deepEqual(await s.revocations.listActivePage(T0 + 10, second.at(-1)!.seq, 2), [])
      }))

    test("revocations.listActivePage with a filter: a tenant's entries; with an agent, its agent entry and the issued_before entries scoped to it", () =>
      withStore(async (s) => {
        const add = (value: string, over: Partial<Omit<Revocation, 'seq'>>) => s.revocations.add(revocation(value, over))
        const jti = await add('j-bot', {})
        const agent = await add('bot', { type: 'agent' })
        await add('bot', { type: 'agent', tenant: 'initech' })
        await add('bot', { type: 'agent', expiresAt: T0 + 1 })
        await add('other-bot', { type: 'agent' })
        const scoped = await add(String(T0 / 1000), { type: 'issued_before', agentId: 'bot' })
        const tenantWide = await add(String(T0 / 1000), { type: 'issued_before' })
        await add('bot', { type: 'client' })
        const bots = await s.revocations.listActivePage(T0 + 10, 0, 10, { tenant: 'acme', agentId: 'bot' })
        assert.deepEqual(bots, [agent, scoped], 'not the other tenant, the expired entry, another agent, a client entry or a jti')
        assert.deepEqual(await s.revocations.listActivePage(T0 + 10, agent.seq, 10, { tenant: 'acme', agentId: 'bot' }), [scoped])
        const acme = await s.revocations.listActivePage(T0 + 10, 0, 10, { tenant: 'acme' })
        assert.equal(acme.length, 6)
        assert.ok(acme.every((r) => r.tenant === 'acme'))
        assert.deepEqual([acme[0], acme.at(-2)], [jti, tenantWide])
      }))

    test('revocations: a lift ends a standing entry once, under the next seq; listStanding skips jti entries and lifted ones', () =>
      withStore(async (s, h) => {
        const forever = { expiresAt: REVOCATION_PERMANENT }
        const jti = await s.revocations.add(revocation('j1'))
        const agent = await s.revocations.add(revocation('bot', { type: 'agent', ...forever }))
        const client = await s.revocations.add(revocation('c-1', { type: 'client', ...forever }))
        const tenantWide = await s.revocations.add(revocation('acme', { type: 'tenant', ...forever }))
        assert.deepEqual(
          (await s.revocations.listStanding(T0)).map((r) => r.seq),
          [agent.seq, client.seq, tenantWide.seq],
        )
        assert.deepEqual(await s.revocations.get(agent.seq), agent, 'an unlifted entry reads back as written, permanent expiry included')

        const other = h.reopen ? await h.reopen() : s
        const [x, y] = await Promise.all([s.revocations.lift(agent.seq, T0 + 10, 'admin:a'), other.revocations.lift(agent.seq, T0 + 10, 'admin:b')])
        const lifted = (x ?? y)!
        assert.ok((x === null) !== (y === null), 'exactly one of two concurrent lifts wins')
        assert.equal(lifted.seq, agent.seq)
        assert.equal(lifted.liftedAt, T0 + 10)
        assert.equal(lifted.expiresAt, T0 + 10)
        assert.ok(lifted.liftSeq! > tenantWide.seq)
        assert.equal(await s.revocations.lastSeq(), lifted.liftSeq, 'the lift advanced the feed sequence')
        assert.deepEqual(await s.revocations.get(agent.seq), lifted)
        assert.deepEqual(
          (await s.revocations.listStanding(T0)).map((r) => r.seq),
          [client.seq, tenantWide.seq],
        )
        assert.deepEqual(
          (await s.revocations.listActive(T0)).map((r) => r.seq),
          [jti.seq, client.seq, tenantWide.seq],
          'lifted entries are not active, whatever the time asked',
        )
        assert.equal(await s.revocations.lift(agent.seq, T0 + 20, 'admin:a'), null, 'a lifted entry is not lifted twice')
        assert.equal(await s.revocations.lift(jti.seq, T0 + 60_000, 'admin:a'), null, 'an expired entry cannot be lifted')
        assert.equal(await s.revocations.lift(999_999, T0, 'admin:a'), null)
        const next = await s.revocations.add(revocation('j2'))
        assert.ok(next.seq > lifted.liftSeq!, 'a new entry comes after the lift')
      }))

    test('policies: create, get, list; (tenant, version) is unique', () =>
      withStore(async (s) => {
        const p1 = policy('p1', 'acme', 'v1')
        await s.policies.create(p1)
        await s.policies.create(policy('p2', 'acme', 'v2', { status: 'candidate', createdAt: T0 + 1 }))
        await s.policies.create(policy('p3', 'beta', 'v1'))
        await rejectsWith(s.policies.create(policy('p4', 'acme', 'v1')), Conflict)
        assert.deepEqual(await s.policies.get('acme', 'p1'), p1)
        assert.equal(await s.policies.get('beta', 'p1'), null, 'another tenant cannot read it')
        assert.deepEqual(
          (await s.policies.list('acme')).map((p) => p.id),
          ['p1', 'p2'],
        )
        const u = await s.policies.update('acme', 'p2', { mode: 'shadow', reviewedAt: T0 + 7 })
        assert.deepEqual(u, { ...policy('p2', 'acme', 'v2', { status: 'candidate', createdAt: T0 + 1 }), mode: 'shadow', reviewedAt: T0 + 7 })
        assert.deepEqual(await s.policies.get('acme', 'p2'), u)
        await rejectsWith(s.policies.update('acme', 'p9', { mode: 'shadow' }), NotFound)
        await rejectsWith(s.policies.activate('acme', 'p9', T0), NotFound)
        await rejectsWith(s.policies.activate('beta', 'p1', T0), NotFound)
      }))

    test("policies.listCandidates: every tenant's candidates, by tenant then oldest first, none active or inactive", () =>
      withStore(async (s) => {
        await s.policies.create(policy('a1', 'acme', 'v1', { status: 'candidate', createdAt: T0 + 5 }))
        await s.policies.create(policy('a2', 'acme', 'v2', { status: 'candidate', createdAt: T0 + 2 }))
        await s.policies.create(policy('a3', 'acme', 'v3', { createdAt: T0 + 1 }))
        await s.policies.create(policy('b1', 'beta', 'v1', { status: 'candidate', createdAt: T0 + 9 }))
        await s.policies.create(policy('b2', 'beta', 'v2', { createdAt: T0 + 3 }))
        await s.policies.activate('beta', 'b2', T0 + 4)
        assert.deepEqual(
          (await s.policies.listCandidates()).map((p) => `${p.tenant}/${p.id}`),
          ['acme/a2', 'acme/a1', 'beta/b1'],
        )
        assert.deepEqual((await s.policies.listCandidates())[0], await s.policies.get('acme', 'a2'))
        // The same first candidate as a tenant's list finds.
        assert.equal((await s.policies.list('acme')).find((p) => p.status === 'candidate')?.id, 'a2')
      }))

    test('policies.activate leaves exactly one active bundle per tenant, even when racing', () =>
      withStore(async (s, h) => {
        for (let i = 1; i <= 6; i++) await s.policies.create(policy(`p${i}`, 'acme', `v${i}`, { createdAt: T0 + i }))
        await s.policies.create(policy('b1', 'beta', 'v1'))
        const b = await s.policies.activate('beta', 'b1', T0 + 1)
        assert.equal(b.status, 'active')
        const a = await s.policies.activate('acme', 'p1', T0 + 2)
        assert.deepEqual(a, { ...policy('p1', 'acme', 'v1', { createdAt: T0 + 1 }), status: 'active', activatedAt: T0 + 2 })
        const p2 = await s.policies.activate('acme', 'p2', T0 + 3)
        assert.equal(p2.status, 'active')
        assert.equal((await s.policies.get('acme', 'p1'))?.status, 'inactive')
        assert.deepEqual(
          (await s.policies.listActive()).map((p) => `${p.tenant}/${p.id}`),
          ['acme/p2', 'beta/b1'],
        )

        const other = h.reopen ? await h.reopen() : s
        await Promise.all(['p3', 'p4', 'p5', 'p6', 'p3', 'p5'].map((id, i) => (i % 2 ? other : s).policies.activate('acme', id, T0 + 10 + i)))
        const active = (await s.policies.list('acme')).filter((p) => p.status === 'active')
        assert.equal(active.length, 1)
        assert.deepEqual(
          (await s.policies.listActive()).map((p) => p.tenant),
          ['acme', 'beta'],
        )
        assert.equal((await s.policies.get('beta', 'b1'))?.status, 'active', 'other tenants keep theirs')
      }))

    test('approvals: create, get, findOpen, list, countOpen, setDeliveries', () =>
      withStore(async (s) => {
        const a1 = approval('ap1')
        await s.approvals.create(a1)
        await rejectsWith(s.approvals.create(approval('ap1')), Conflict)
        await s.approvals.create(approval('ap2', { paramsHash: 'ph2', createdAt: T0 + 1 }))
        await s.approvals.create(approval('ap3', { agentId: 'other', createdAt: T0 + 2, expiresAt: T0 + 10 }))
        await s.approvals.create(approval('ap4', { tenant: 'beta', createdAt: T0 + 3 }))
        await s.approvals.create(approval('ap5', { status: 'denied', createdAt: T0 + 4 }))
        assert.deepEqual(await s.approvals.get('ap1'), a1)
        assert.equal(await s.approvals.get('nope'), null)

        assert.deepEqual((await s.approvals.findOpen('acme', 'bot', 'send_email', 'ph1', T0))?.id, 'ap1')
        assert.equal(await s.approvals.findOpen('acme', 'bot', 'send_email', 'ph9', T0), null)
        assert.equal(await s.approvals.findOpen('acme', 'bot', 'other_tool', 'ph1', T0), null)
        assert.equal(await s.approvals.findOpen('acme', 'bot', 'send_email', 'ph1', a1.expiresAt), null, 'an expired request is not open')
        assert.equal(await s.approvals.findOpen('beta', 'bot', 'send_email', 'ph2', T0), null)

        assert.deepEqual((await s.approvals.list({ limit: 10 })).map((a) => a.id).sort(), ['ap1', 'ap2', 'ap3', 'ap4', 'ap5'])
        assert.deepEqual((await s.approvals.list({ tenant: 'acme', status: 'pending', limit: 10 })).map((a) => a.id).sort(), ['ap1', 'ap2', 'ap3'])
        assert.deepEqual(
          (await s.approvals.list({ status: 'denied', limit: 10 })).map((a) => a.id),
          ['ap5'],
        )
        assert.equal((await s.approvals.list({ tenant: 'acme', limit: 2 })).length, 2)

        assert.equal(await s.approvals.countOpen({ tenant: 'acme', now: T0 }), 3)
        assert.equal(await s.approvals.countOpen({ tenant: 'acme', now: T0 + 10 }), 2, 'expired ones do not count')
        assert.equal(await s.approvals.countOpen({ tenant: 'acme', agentId: 'bot', now: T0 }), 2)
        assert.equal(await s.approvals.countOpen({ tenant: 'gamma', now: T0 }), 0)

        const deliveries = [
          { notifier: 'slack', status: 'delivered' as const, attempts: 1, lastError: null, updatedAt: T0 + 5 },
          { notifier: 'webhook', status: 'failed' as const, attempts: 3, lastError: 'HTTP 500', updatedAt: T0 + 6 },
        ]
        await s.approvals.setDeliveries('ap1', deliveries)
        assert.deepEqual((await s.approvals.get('ap1'))?.deliveries, deliveries)
        await rejectsWith(s.approvals.setDeliveries('nope', []), NotFound)
      }))

    test('approvals.decide: exactly one decision wins; expired or decided requests change nothing', () =>
      withStore(async (s, h) => {
        await s.approvals.create(approval('ap1'))
        await s.approvals.create(approval('ap2', { expiresAt: T0 + 100 }))
        const other = h.reopen ? await h.reopen() : s
        const results = await Promise.all(
          Array.from({ length: 12 }, (_, i) =>
            (i % 2 ? other : s).approvals.decide('ap1', {
              status: i % 3 === 0 ? 'denied' : 'approved',
              decidedBy: `admin:${i}`,
              reason: `r${i}`,
              decidedAt: T0 + 10,
              overrideJti: `ov${i}`,
            }),
          ),
        )
        const winners = results.filter((r) => r !== null)
        assert.equal(winners.length, 1)
        const w = winners[0]!
        const i = results.indexOf(w)
        assert.equal(w.status, i % 3 === 0 ? 'denied' : 'approved')
        assert.equal(w.decidedBy, `admin:${i}`)
        assert.equal(w.overrideJti, `ov${i}`)
        assert.equal(w.decidedAt, T0 + 10)
        assert.deepEqual(await s.approvals.get('ap1'), w)

        assert.equal(await s.approvals.decide('ap2', { status: 'approved', decidedBy: 'admin:x', reason: null, decidedAt: T0 + 100, overrideJti: null }), null)
        assert.equal((await s.approvals.get('ap2'))?.status, 'pending')
        assert.equal(await s.approvals.decide('nope', { status: 'approved', decidedBy: 'admin:x', reason: null, decidedAt: T0, overrideJti: null }), null)
      }))

    test('approvals.expire moves overdue pending requests to expired and returns them', () =>
      withStore(async (s) => {
        await s.approvals.create(approval('ap1', { expiresAt: T0 + 10 }))
        await s.approvals.create(approval('ap2', { expiresAt: T0 + 20, createdAt: T0 + 1 }))
        await s.approvals.create(approval('ap3', { expiresAt: T0 + 30 }))
        await s.approvals.create(approval('ap4', { expiresAt: T0 + 5, status: 'approved' }))
        const expired = await s.approvals.expire(T0 + 20)
        assert.deepEqual(
          expired.map((a) => [a.id, a.status]),
          [
            ['ap1', 'expired'],
            ['ap2', 'expired'],
          ],
        )
        assert.equal((await s.approvals.get('ap3'))?.status, 'pending')
        assert.equal((await s.approvals.get('ap4'))?.status, 'approved')
        assert.deepEqual(await s.approvals.expire(T0 + 20), [])
        assert.equal(await s.approvals.decide('ap1', { status: 'approved', decidedBy: 'admin:x', reason: null, decidedAt: T0, overrideJti: null }), null)
      }))

    test('trusted issuers: create, list, findByIssuer across tenants, delete', () =>
      withStore(async (s) => {
        const i1 = issuer('ti1', 'acme', 'https://k8s.example')
        await s.trustedIssuers.create(i1)
        await s.trustedIssuers.create({ ...issuer('ti2', 'beta', 'https://k8s.example'), jwksUri: null, jwks: { keys: [{ kty: 'EC' }] } })
        await s.trustedIssuers.create(issuer('ti3', 'acme', 'https://other.example'))
        await rejectsWith(s.trustedIssuers.create(issuer('ti1', 'acme', 'https://x')), Conflict)
        assert.deepEqual(
          (await s.trustedIssuers.list('acme')).map((t) => t.id),
          ['ti1', 'ti3'],
        )
        assert.deepEqual((await s.trustedIssuers.list('acme'))[0], i1)
        const found = await s.trustedIssuers.findByIssuer('https://k8s.example')
        assert.deepEqual(
          found.map((t) => t.tenant),
          ['acme', 'beta'],
        )
        assert.deepEqual(found[1]?.jwks, { keys: [{ kty: 'EC' }] })
        assert.deepEqual(await s.trustedIssuers.findByIssuer('https://nobody'), [])
        await rejectsWith(s.trustedIssuers.delete('beta', 'ti1'), NotFound)
        await s.trustedIssuers.delete('acme', 'ti1')
        assert.deepEqual(
          (await s.trustedIssuers.list('acme')).map((t) => t.id),
          ['ti3'],
        )
      }))

    test('delegation settings round-trip: agent delegates, tenant max_delegation_depth (set and cleared), trusted issuer users', () =>
      withStore(async (s) => {
        await s.tenants.create(tenant('deleg', { maxDelegationDepth: 2 }))
        assert.equal((await s.tenants.get('deleg'))?.maxDelegationDepth, 2)
        await s.tenants.update('deleg', { maxDelegationDepth: 3 })
        assert.equal((await s.tenants.get('deleg'))?.maxDelegationDepth, 3)
        await s.tenants.update('deleg', { maxDelegationDepth: null })
        assert.equal((await s.tenants.get('deleg'))?.maxDelegationDepth ?? null, null)
        await s.agents.create(agent('deleg', 'planner', { delegates: ['worker', 'leaf'] }))
        assert.deepEqual((await s.agents.get('deleg', 'planner'))?.delegates, ['worker', 'leaf'])
        await s.agents.update('deleg', 'planner', { delegates: ['leaf'] }, T0 + 1)
        assert.deepEqual((await s.agents.get('deleg', 'planner'))?.delegates, ['leaf'])
        const users = { claim: 'groups', grants: [{ value: 'treasury', scopes: ['pay'], capabilities: ['payments.transfer'] }], resourcesClaim: 'accounts' }
        await s.trustedIssuers.create({ ...issuer('ti-people', 'deleg', 'https://idp.example'), rules: [], users })
        assert.deepEqual((await s.trustedIssuers.list('deleg'))[0]?.users, users)
      }))

    test('gateway acks: put upserts, list returns every gateway', () =>
      withStore(async (s) => {
        await s.gatewayAcks.put({ gatewayId: 'gw-b', seq: 3, updatedAt: T0 })
        await s.gatewayAcks.put({ gatewayId: 'gw-a', seq: 1, updatedAt: T0 })
        await s.gatewayAcks.put({ gatewayId: 'gw-b', seq: 7, updatedAt: T0 + 1 })
        assert.deepEqual(await s.gatewayAcks.list(), [
          { gatewayId: 'gw-a', seq: 1, updatedAt: T0 },
          { gatewayId: 'gw-b', seq: 7, updatedAt: T0 + 1 },
        ])
      }))

    test('console logouts: add is idempotent, has sees them from another store, purgeExpired drops only expired ones', () =>
      withStore(async (s, h) => {
        assert.equal(await s.consoleLogouts.has('sid-a'), false)
        await s.consoleLogouts.add('sid-a', T0 + 1000)
        await s.consoleLogouts.add('sid-a', T0 + 1000)
        await s.consoleLogouts.add('sid-b', T0 + 5000)
        assert.equal(await s.consoleLogouts.has('sid-a'), true)
        assert.equal(await s.consoleLogouts.has('sid-b'), true)
        assert.equal(await s.consoleLogouts.has('sid-c'), false)
        assert.equal(await s.consoleLogouts.has('SID-A'), false, 'ids are compared exactly')
        const other = h.reopen ? await h.reopen() : s
        assert.equal(await other.consoleLogouts.has('sid-a'), true, 'another control plane on the database sees the logout')
        await Promise.all(Array.from({ length: 8 }, (_, i) => (i % 2 ? other : s).consoleLogouts.add('sid-race', T0 + 9000)))
        assert.equal(await s.consoleLogouts.has('sid-race'), true)

        assert.equal(await s.consoleLogouts.purgeExpired(T0 + 999), 0, 'kept until the session expires')
        assert.equal(await s.consoleLogouts.has('sid-a'), true)
        assert.equal(await s.consoleLogouts.purgeExpired(T0 + 1000), 1, 'expiresAt is inclusive for the purge')
        assert.equal(await s.consoleLogouts.has('sid-a'), false)
        assert.equal(await other.consoleLogouts.has('sid-b'), true)
        assert.equal(await other.consoleLogouts.purgeExpired(T0 + 10_000), 2, 'sid-race was stored once')
        assert.equal(await s.consoleLogouts.has('sid-b'), false)
        assert.equal(await s.consoleLogouts.has('sid-race'), false)
        await s.consoleLogouts.add('sid-a', T0 + 20_000)
        assert.equal(await s.consoleLogouts.has('sid-a'), true, 'a purged id can be recorded again')
      }))

    test('kpi counts: add sums into rows, concurrent adds from two stores all count, read takes totals and recent slots, prune drops old history only', () =>
      withStore(async (s, h) => {
        await s.kpis.add([])
        await s.kpis.add([
          { tenant: '', slot: 0, metric: 'issued', n: 2 },
          { tenant: '', slot: 100, metric: 'issued', n: 2 },
          { tenant: 'acme', slot: 100, metric: 'decision.allow', n: 5 },
        ])
        await s.kpis.add([
          { tenant: '', slot: 0, metric: 'issued', n: 3 },
          { tenant: '', slot: 90, metric: 'issued', n: 7 },
        ])
        const other = h.reopen ? await h.reopen() : s
        // Each add locks its rows in one order: overlapping concurrent batches from two stores wait for one another, none is lost.
        await Promise.all(
          Array.from({ length: 8 }, (_, i) =>
            (i % 2 ? other : s).kpis.add(
              [
                { tenant: 'acme', slot: 100, metric: 'decision.allow', n: 1 },
                { tenant: '', slot: 0, metric: 'issued', n: 1 },
                { tenant: '', slot: 100, metric: 'issued', n: 1 },
              ].sort(() => (i % 3) - 1),
            ),
          ),
        )
        const byKey = (rows: Array<{ tenant: string; slot: number; metric: string; n: number }>) =>
          Object.fromEntries(rows.map((r) => [`${r.tenant}/${r.slot}/${r.metric}`, r.n]))
        assert.deepEqual(byKey(await other.kpis.read('', 95)), { '/0/issued': 13, '/100/issued': 10 }, 'slot 90 is before fromSlot; totals always come')
        assert.deepEqual(byKey(await s.kpis.read('', 0)), { '/0/issued': 13, '/90/issued': 7, '/100/issued': 10 })
        assert.deepEqual(byKey(await s.kpis.read('acme', 0)), { 'acme/100/decision.allow': 13 })
        assert.deepEqual(await s.kpis.read('nobody', 0), [])
        assert.equal(await s.kpis.prune(100), 1, 'slot 90 only: totals and newer slots stay')
        assert.deepEqual(byKey(await s.kpis.read('', 0)), { '/0/issued': 13, '/100/issued': 10 })
      }))

    test('tryWithLock: a second concurrent holder gets {ran:false}, without waiting', () =>
      withStore(async (s, h) => {
        const g = gate()
        const first = s.tryWithLock('keys.rotate', async () => {
          g.enter()
          await g.released
          return 'first'
        })
        await g.entered
        assert.deepEqual(await s.tryWithLock('keys.rotate', async () => 'second'), { ran: false })
        const other = h.reopen ? await h.reopen() : undefined
        if (other) assert.deepEqual(await other.tryWithLock('keys.rotate', async () => 'other'), { ran: false }, 'held across store instances')
        assert.deepEqual(await s.tryWithLock('another.name', async () => 'free'), { ran: true, value: 'free' }, 'names are independent')
        g.release()
        assert.deepEqual(await first, { ran: true, value: 'first' })
        assert.deepEqual(await (other ?? s).tryWithLock('keys.rotate', async () => 'after'), { ran: true, value: 'after' }, 'released after fn')
      }))

    test('tryWithLock: an error in fn propagates and releases the lock', () =>
      withStore(async (s, h) => {
        const boom = new Error('boom')
        await assert.rejects(
          s.tryWithLock('job', async () => {
            throw boom
          }),
          (e) => e === boom,
        )
        const other = h.reopen ? await h.reopen() : s
        assert.deepEqual(await other.tryWithLock('job', async () => 1), { ran: true, value: 1 })
      }))

    test('reopening an existing database keeps its data and applies no migration twice', async (t) => {
      const h = await create()
      try {
        if (!h.reopen) {
          t.skip('backend gives no reopen')
          return
        }
        await h.store.tenants.create(tenant('acme'))
        await h.store.revocations.add(revocation('j1'))
        const again = await h.reopen()
        assert.deepEqual(await again.tenants.get('acme'), tenant('acme'))
        assert.equal(await again.revocations.lastSeq(), 1)
        const twice = await Promise.all([h.reopen(), h.reopen()])
        for (const x of twice) assert.equal((await x.tenants.list()).length, 1)
      } finally {
        await h.cleanup()
      }
    })

    test('close is idempotent', async () => {
      const h = await create()
      await h.store.close()
      await h.store.close()
      await h.cleanup()
    })
  })
}
