/**
 * The `agent`, `client` and `tenant` revocations in force, held in memory so
 * the token endpoint refuses a revoked agent, client or tenant with a few
 * Map lookups and no store round trip (docs/reference.md "Revocation": while such an
 * entry holds, the token endpoint issues nothing for it).
 *
 * Kept current three ways: this control plane applies its own changes before
 * answering (recordRevocation, liftRevocation); feed events carry every
 * control plane's changes (Redis); and a poll of the store's revocation
 * sequence reloads the list when some change was not heard (no Redis between
 * control planes, or a lost pub/sub message).
 */
import type { FeedEvent } from '../feed/events.js'
import type { Revocation, RevocationRepo } from '../../store/types.js'

// Separator for composite keys: a NUL cannot occur in a tenant, agent or client id.
const SEP = '\u0000'

/** What an issuance is about: the tenant, the agent, and every client id it goes by (credential, agent). */
export interface IssuanceSubject {
  tenant: string
  agentId: string
  clientIds: readonly string[]
}

function isStanding(r: Revocation): boolean {
  return r.type === 'agent' || r.type === 'client' || r.type === 'tenant'
}

function keyOf(r: Revocation): string {
  // Tenant entries name their tenant in `value`; agent and client entries are scoped by `tenant` (required by the admin API).
  return r.type === 'tenant' ? `tenant${SEP}${r.value}` : `${r.type}${SEP}${r.tenant ?? ''}${SEP}${r.value}`
}

export class StandingRevocations {
  /** key → entries on that key by seq (two entries on one key: lifting one leaves the other). */
  private byKey = new Map<string, Map<number, Revocation>>()
  private keyBySeq = new Map<number, string>()
  private loaded: Promise<void> | null = null
  private isLoaded = false
  /** Events heard while a reload ran, re-applied on top of what it read. */
  private heardDuringReload: FeedEvent[] | null = null
  private lastSeq = -1
  private reloading: Promise<void> = Promise.resolve()

  constructor(
    private readonly repo: Pick<RevocationRepo, 'listStanding' | 'lastSeq'>,
    private readonly now: () => number,
  ) {}

  /** Number of entries held. */
  get size(): number {
    return this.keyBySeq.size
  }

  /** Resolves once the list was read from the store at least once. */
  ready(): Promise<void> {
    // A failed first load (store down) is retried by the next caller rather than remembered.
    this.loaded ??= this.reload().catch((err: unknown) => {
      this.loaded = null
      throw err
    })
    return this.loaded
  }

  /**
   * The entry that refuses issuance for `s`, or null. Synchronous once
   * ready() resolved; before that it answers with a promise (never "not
   * revoked" from an empty, unloaded list).
   */
  match(s: IssuanceSubject): Revocation | null | Promise<Revocation | null> {
    if (!this.isLoaded) return this.ready().then(() => this.matchLoaded(s))
    return this.matchLoaded(s)
  }

  private matchLoaded(s: IssuanceSubject): Revocation | null {
    if (this.keyBySeq.size === 0) return null
    const now = this.now()
    const first = (key: string): Revocation | null => {
      const m = this.byKey.get(key)
      if (m) for (const r of m.values()) if (r.expiresAt > now) return r
      return null
    }
    let hit = first(`tenant${SEP}${s.tenant}`) ?? first(`agent${SEP}${s.tenant}${SEP}${s.agentId}`) ?? first(`agent${SEP}${SEP}${s.agentId}`)
    for (const c of s.clientIds) hit ??= first(`client${SEP}${s.tenant}${SEP}${c}`) ?? first(`client${SEP}${SEP}${c}`)
    return hit
  }

  /** Adds a standing entry (other types are ignored). Idempotent by seq. */
  apply(r: Revocation): void {
    if (this.heardDuringReload) this.heardDuringReload.push({ kind: 'revocation', revocation: r })
    this.add(r)
  }

  /** Drops entry `seq` (lifted). */
  lift(r: Revocation, liftSeq: number): void {
    if (this.heardDuringReload) this.heardDuringReload.push({ kind: 'revocation_lifted', seq: liftSeq, revocation: r })
    this.remove(r.seq)
  }

  /** Applies a feed event from any control plane. */
  onFeedEvent(e: FeedEvent): void {
    if (e.kind === 'revocation') this.apply(e.revocation)
    else if (e.kind === 'revocation_lifted') this.lift(e.revocation, e.seq)
  }

  /** Reloads when the store's revocation sequence moved since the last load (one small query otherwise). */
  async refresh(): Promise<void> {
    const seq = await this.repo.lastSeq()
    if (seq !== this.lastSeq) await this.reload(seq)
  }

  /** Reads every standing entry from the store and replaces the list; changes heard meanwhile are kept. Reloads run one at a time. */
  reload(knownSeq?: number): Promise<void> {
    const run = this.reloading.catch(() => {}).then(() => this.load(knownSeq))
    this.reloading = run
    return run
  }

  private async load(knownSeq?: number): Promise<void> {
    const heard: FeedEvent[] = []
    this.heardDuringReload = heard
    try {
      // The seq is read first: a change committed after it makes the next refresh() reload again.
      const seq = knownSeq ?? (await this.repo.lastSeq())
      const list = await this.repo.listStanding(this.now())
      this.byKey = new Map()
      this.keyBySeq = new Map()
      for (const r of list) this.add(r)
      for (const e of heard) {
        if (e.kind === 'revocation') this.add(e.revocation)
        else if (e.kind === 'revocation_lifted') this.remove(e.revocation.seq)
      }
      this.lastSeq = seq
      this.isLoaded = true
    } finally {
      if (this.heardDuringReload === heard) this.heardDuringReload = null
    }
  }

  private add(r: Revocation): void {
    if (!isStanding(r) || r.liftedAt !== undefined || this.keyBySeq.has(r.seq)) return
    const key = keyOf(r)
    let m = this.byKey.get(key)
    if (!m) {
      m = new Map()
      this.byKey.set(key, m)
    }
    m.set(r.seq, r)
    this.keyBySeq.set(r.seq, key)
  }

  private remove(seq: number): void {
    const key = this.keyBySeq.get(seq)
    if (key === undefined) return
    this.keyBySeq.delete(seq)
    const m = this.byKey.get(key)
    m?.delete(seq)
    if (m && m.size === 0) this.byKey.delete(key)
  }
}
