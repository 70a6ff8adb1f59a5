import { generateKeyPairSync, randomBytes } from 'node:crypto'
import type { AegisConfig } from '../../config/schema.js'
import { AegisError, Unavailable } from '../../errors.js'
import { canonicalHash } from '../../lib/canonical-json.js'
import type { Clock } from '../../lib/clock.js'
import { sha256b64url } from '../../lib/hash.js'
import type { Logger } from '../../observability/logger.js'
import type { Metrics } from '../../observability/metrics.js'
import type { ClusterSignal } from '../../store/signal.js'
import type { AuditEventInput, KeyState, SigningKey, Store } from '../../store/types.js'
import type { AuditWriter } from '../audit/types.js'
import { ed25519Signer, type Ed25519Signer } from './ed25519-signer.js'
import { decryptPrivateKey, encryptPrivateKey, loadKek } from './kek.js'
import type { KeyManager } from './types.js'

/** Name of the cluster-wide lock held while keys are created or change state. */
export const KEYS_LOCK = 'aegis:keys'

/** Channel of the cluster signal on which control planes announce key changes. */
export const KEYS_SIGNAL = 'keys'

/**
 * What changed in the key set, as every control plane announces it after a
 * write (to the others through the cluster signal, to gateways on the feed).
 */
export interface KeyChange {
  /** kid that signs now. */
  current: string
  /** Every published kid (next, current, previous): what a verifier must hold. */
  kids: string[]
  /** kids revoked by this change (emergency rotation); never sign with them again. */
  revoked: string[]
}

/** A key as listed by the admin API and the CLI: no private material. */
export type PublicKeyInfo = Omit<SigningKey, 'encryptedPrivateKey'>

export interface KeyManagerDeps {
  config: AegisConfig
  store: Store
  /** Where key.* events go; may be attached later with attachAudit (events wait until then). */
  audit?: AuditWriter
  clock: Clock
  logger: Logger
  metrics: Metrics
  /**
   * Key-encryption key. Default: loadKek(config, { createIfMissing: false }),
   * so a control plane without AEGIS_KEK, AEGIS_KEK_FILE or `<dataDir>/kek`
   * refuses to start (`aegis dev` creates the file first).
   */
  kek?: Buffer
  /**
   * Broadcast between control planes on the same store: key writes are
   * announced on it, and an announcement from another control plane makes
   * this one reload its keys at once (an emergency rotation stops the old key
   * signing everywhere within the signal's latency, not the next check).
   */
  signal?: ClusterSignal
}

/** The KeyManager plus what its owner (control-plane app, CLI, tests) needs. */
export interface ManagedKeyManager extends KeyManager {
  /** Sends key.* events to this writer, including those that waited for it. */
  attachAudit(audit: AuditWriter): void
  /**
   * One scheduler pass: reload from the store, then under the cluster lock
   * persist due state changes and publish a `next` key when rotation is due.
   * The timer started by start() calls this every keys.checkIntervalSeconds.
   */
  maintain(): Promise<void>
  /**
   * Calls `listener` after every key change this control plane wrote or
   * heard of from another one (awaited by rotate() before it resolves, so a
   * rotation's answer comes after its announcement). Returns the unsubscriber.
   */
  onChange(listener: (change: KeyChange) => void | Promise<void>): () => void
}

/** A key with its state as the schedule says at a given instant. */
export interface Effective extends SigningKey {
  /** State as stored (the lock holder persists transitions later). */
  storedState: KeyState
}

export interface View {
  keys: Effective[]
  current: Effective | null
  /** Next instant at which some key changes state (epoch ms). */
  boundaryAt: number
}

/** RFC 7638 JWK thumbprint: canonical JSON of the required members, SHA-256, base64url. */
function thumbprint(jwk: { crv: string; kty: string; x: string }): string {
  return canonicalHash({ crv: jwk.crv, kty: jwk.kty, x: jwk.x })
}

/**
 * Computes every key's state at `now` from the stored schedule alone, so
 * that every control plane reading the same rows agrees on the signing key at
 * the same instant without talking to the others:
 * - revoked or stored-retired keys are retired;
 * - among the others, those that have started (activatesAt ≤ now, or already
 *   persisted as current/previous) are ordered newest first: the newest is
 *   current, the rest previous until retiresAt, then retired;
 * - keys not started yet are next.
 */
export function effectiveKeys(rows: readonly SigningKey[], now: number, retentionMs: number): View {
  const keys: Effective[] = rows.map((r) => ({ ...r, storedState: r.state }))
  const live = keys.filter((k) => !k.revoked && k.storedState !== 'retired')
  const started = live
    .filter((k) => k.activatesAt <= now || k.storedState === 'current' || k.storedState === 'previous')
    .sort((a, b) => b.activatesAt - a.activatesAt || b.createdAt - a.createdAt || (a.kid < b.kid ? -1 : 1))
  let boundaryAt = Number.POSITIVE_INFINITY
  started.forEach((k, i) => {
    if (i === 0) {
      k.state = 'current'
      k.deactivatedAt = null
      k.retiresAt = null
      return
    }
    k.deactivatedAt ??= started[i - 1]!.activatesAt
    k.retiresAt ??= k.deactivatedAt + retentionMs
    if (now >= k.retiresAt) k.state = 'retired'
    else {
      k.state = 'previous'
      boundaryAt = Math.min(boundaryAt, k.retiresAt)
    }
  })
  const startedSet = new Set(started)
  for (const k of live) {
    if (startedSet.has(k)) continue
    k.state = 'next'
    boundaryAt = Math.min(boundaryAt, k.activatesAt)
  }
  for (const k of keys) if (k.revoked || k.storedState === 'retired') k.state = 'retired'
  return { keys, current: started[0] ?? null, boundaryAt }
}

function publicJwkOf(k: SigningKey): Record<string, unknown> {
  const { kty, crv, x } = k.publicJwk as { kty: string; crv: string; x: string }
  return { kty, crv, x, kid: k.kid, alg: 'EdDSA', use: 'sig' }
}

function toInfo(k: Effective): PublicKeyInfo {
  return {
    kid: k.kid,
    alg: k.alg,
    state: k.state,
    publicJwk: publicJwkOf(k),
    createdAt: k.createdAt,
    activatesAt: k.activatesAt,
    deactivatedAt: k.deactivatedAt,
    retiresAt: k.retiresAt,
    revoked: k.revoked,
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/** The current key was revoked and this control plane has not loaded its successor yet. */
class KeyBeingReplaced extends Unavailable {
  constructor(kid: string) {
    super(`signing key ${kid} is being replaced; retry`)
  }
}

/** A block that no reload clears: the rotation that set it is still writing. */
const UNTIL_WRITTEN = Number.POSITIVE_INFINITY

class KeyManagerImpl implements ManagedKeyManager {
  private rows: SigningKey[] = []
  private view: View = { keys: [], current: null, boundaryAt: Number.POSITIVE_INFINITY }
  private readonly privateKeys = new Map<string, Ed25519Signer>()
  private readonly headerCache = new Map<string, string>()
  private jwksSetKey = ''
  private jwksText = '{"keys":[]}'
  private jwksObject: { keys: Record<string, unknown>[] } = Object.freeze({ keys: [] as Record<string, unknown>[] })
  private etag = ''
  private audit: AuditWriter | undefined
  private readonly pendingEvents: AuditEventInput[] = []
  private timer: NodeJS.Timeout | undefined
  private maintaining: Promise<void> | undefined
  private readonly retentionMs: number
  /**
   * kids that must not sign although the rows loaded so far let them: an
   * emergency rotation revoked them (here or on another control plane). Each
   * maps to the reload counter at which it was blocked; only a reload that
   * started later (so read rows written after the revocation) clears it.
   */
  private readonly blocked = new Map<string, number>()
  private reloads = 0
  private reloading: Promise<void> | undefined
  private readonly listeners = new Set<(change: KeyChange) => void | Promise<void>>()
  /** Tells this instance's announcements apart from the others' on the cluster signal. */
  private readonly origin = randomBytes(9).toString('base64url')
  private signal: ClusterSignal | undefined
  private unlisten: (() => void) | undefined
  private staleTimer: NodeJS.Timeout | undefined

  constructor(
    private readonly config: AegisConfig,
    private readonly store: Store,
    private readonly clock: Clock,
    private readonly logger: Logger,
    private readonly kek: Buffer,
  ) {
    const t = config.tokens
    // A previous key must outlive every token it could have signed, override tokens included.
    this.retentionMs = (Math.max(t.maxTtlSeconds, t.overrideTtlSeconds) + t.clockSkewSeconds) * 1000
    this.rebuildJwks()
  }

  attachAudit(audit: AuditWriter): void {
    this.audit = audit
    const waiting = this.pendingEvents.splice(0)
    for (const e of waiting) this.sendAudit(e)
  }

  private sendAudit(e: AuditEventInput): Promise<void> {
    if (!this.audit) {
      this.pendingEvents.push(e)
      return Promise.resolve()
    }
    return this.audit.append(e).catch((err: unknown) => {
      this.logger.error({ err, type: e.type, kid: e.subject }, 'key audit event not written')
    })
  }

  // ---------------------------------------------------------------- signing

  signJwt(header: Record<string, unknown>, payload: Record<string, unknown>): { jwt: string; kid: string } {
    const { input, signer, kid } = this.signingInput(header, payload)
    return { jwt: `${input}.${signer.sign(Buffer.from(input)).toString('base64url')}`, kid }
  }

  /** signJwt for the token endpoint, where many requests are in flight (Ed25519Signer.signAsync says where it signs). */
  signJwtAsync(header: Record<string, unknown>, payload: Record<string, unknown>): Promise<{ jwt: string; kid: string }> {
    let prepared: { input: string; signer: Ed25519Signer; kid: string }
    try {
      prepared = this.signingInput(header, payload)
    } catch (err) {
      if (err instanceof KeyBeingReplaced) return this.signAfterReplacement(header, payload)
      return Promise.reject(err)
    }
    const { input, signer, kid } = prepared
    return signer.signAsync(Buffer.from(input)).then((signature) => ({ jwt: `${input}.${signature.toString('base64url')}`, kid }))
  }

  /**
   * The current key was just revoked: wait (a few milliseconds: one reload)
   * for its successor rather than fail the request, for at most 3 s.
   */
  private async signAfterReplacement(header: Record<string, unknown>, payload: Record<string, unknown>): Promise<{ jwt: string; kid: string }> {
    const deadline = Date.now() + 3_000
    for (;;) {
      const cur = this.view.current
      if (cur && this.blocked.get(cur.kid) === UNTIL_WRITTEN) await sleep(10)
      else await this.reload().catch(() => sleep(50))
      try {
        const { input, signer, kid } = this.signingInput(header, payload)
        const signature = await signer.signAsync(Buffer.from(input))
        return { jwt: `${input}.${signature.toString('base64url')}`, kid }
      } catch (err) {
        if (!(err instanceof KeyBeingReplaced) || Date.now() >= deadline) throw err
      }
    }
  }

  /** The JWS signing input under the current key. */
  private signingInput(header: Record<string, unknown>, payload: Record<string, unknown>): { input: string; signer: Ed25519Signer; kid: string } {
    const now = this.clock.now()
    if (now >= this.view.boundaryAt) this.advance(now)
    const cur = this.view.current
    if (!cur) throw new Unavailable('no signing key available')
    if (this.blocked.has(cur.kid)) throw new KeyBeingReplaced(cur.kid)
    const signer = this.privateKeys.get(cur.kid) ?? this.loadPrivate(cur)
    // Built by hand: jose's SignJWT goes through async
    // WebCrypto and is several times slower on this hot path.
    const hjson = JSON.stringify(header)
    const cacheKey = cur.kid + hjson
    let h = this.headerCache.get(cacheKey)
    if (h === undefined) {
      h = Buffer.from(JSON.stringify({ ...header, alg: 'EdDSA', kid: cur.kid })).toString('base64url')
      if (this.headerCache.size > 64) this.headerCache.clear()
      this.headerCache.set(cacheKey, h)
    }
    return { input: `${h}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}`, signer, kid: cur.kid }
  }

  signingBackend(): 'libsodium' | 'node:crypto' {
    const cur = this.view.current
    if (!cur) throw new Unavailable('no signing key available')
    return (this.privateKeys.get(cur.kid) ?? this.loadPrivate(cur)).backend
  }

  currentKid(): string {
    const now = this.clock.now()
    if (now >= this.view.boundaryAt) this.advance(now)
    if (!this.view.current) throw new Unavailable('no signing key available')
    return this.view.current.kid
  }

  /** The schedule moved a key to another state: recompute locally, and let the lock holder persist it. */
  private advance(now: number): void {
    this.recompute(now)
    void this.maintain().catch(() => {})
  }

  private loadPrivate(k: SigningKey): Ed25519Signer {
    const der = decryptPrivateKey(this.kek, k.kid, k.encryptedPrivateKey)
    let signer: Ed25519Signer
    try {
      signer = ed25519Signer(der, this.config.keys.ed25519)
    } finally {
      der.fill(0)
    }
    // Refuse to sign with a private key whose public half is not the one we publish.
    if (signer.publicX !== (k.publicJwk as { x?: string }).x) {
      signer.destroy()
      throw new AegisError('server_error', `private key of ${k.kid} does not match its public key`)
    }
    this.privateKeys.set(k.kid, signer)
    return signer
  }

  /** Forgets a private key and wipes it where it can be wiped. */
  private dropPrivate(kid: string): void {
    this.privateKeys.get(kid)?.destroy()
    this.privateKeys.delete(kid)
  }

  // ------------------------------------------------------------------- JWKS

  jwks(): { keys: Record<string, unknown>[] } {
    this.ensureCurrent()
    return this.jwksObject
  }

  jwksBody(): string {
    this.ensureCurrent()
    return this.jwksText
  }

  jwksEtag(): string {
    this.ensureCurrent()
    return this.etag
  }

  list(): PublicKeyInfo[] {
    this.ensureCurrent()
    return this.view.keys.map(toInfo).sort((a, b) => b.activatesAt - a.activatesAt)
  }

  private ensureCurrent(): void {
    const now = this.clock.now()
    if (now >= this.view.boundaryAt) this.advance(now)
  }

  private recompute(now: number): void {
    this.view = effectiveKeys(this.rows, now, this.retentionMs)
    for (const k of this.view.keys) if (k.state === 'retired') this.dropPrivate(k.kid)
    this.rebuildJwks()
  }

  private rebuildJwks(): void {
    const order: Record<KeyState, number> = { current: 0, next: 1, previous: 2, retired: 3 }
    const published = this.view.keys.filter((k) => k.state !== 'retired').sort((a, b) => order[a.state] - order[b.state] || b.activatesAt - a.activatesAt)
    const setKey = published.map((k) => k.kid).join(',')
    if (setKey === this.jwksSetKey && this.etag !== '') return
    this.jwksSetKey = setKey
    const keys = published.map((k) => Object.freeze(publicJwkOf(k)))
    // Shared with every caller (introspection looks keys up per request), so frozen.
    this.jwksObject = Object.freeze({ keys: Object.freeze(keys) as Record<string, unknown>[] })
    this.jwksText = JSON.stringify(this.jwksObject)
    this.etag = `"${sha256b64url(this.jwksText)}"`
  }

  // ------------------------------------------------------------ store sync

  async refresh(): Promise<void> {
    const started = ++this.reloads
    const rows = await this.store.keys.list()
    this.rows = rows
    for (const [kid, at] of this.blocked) if (at < started) this.blocked.delete(kid)
    this.recompute(this.clock.now())
    // Decrypt the keys that sign now or next up front, so a wrong KEK shows at start, not mid-request.
    for (const k of this.view.keys) {
      if ((k.state === 'current' || k.state === 'next') && !this.privateKeys.has(k.kid)) {
        try {
          this.loadPrivate(k)
        } catch (err) {
          this.logger.error({ err, kid: k.kid }, 'cannot load signing key')
          if (k.state === 'current') throw err
        }
      }
    }
  }

  maintain(): Promise<void> {
    // Single flight: a timer tick and a signing call that crossed a boundary share one pass.
    this.maintaining ??= this.runMaintain().finally(() => {
      this.maintaining = undefined
    })
    return this.maintaining
  }

  private async runMaintain(): Promise<void> {
    await this.refresh()
    const res = await this.store.tryWithLock(KEYS_LOCK, () => this.reconcileLocked())
    if (res.ran && res.value) {
      await this.refresh()
      await this.announce([])
    }
  }

  /** One reload at a time, started now or joined (signers waiting for a replacement key). */
  private reload(): Promise<void> {
    this.reloading ??= this.refresh().finally(() => {
      this.reloading = undefined
    })
    return this.reloading
  }

  // ------------------------------------------------------ change announcements

  onChange(listener: (change: KeyChange) => void | Promise<void>): () => void {
    this.listeners.add(listener)
    return () => {
      this.listeners.delete(listener)
    }
  }

  private change(revoked: string[]): KeyChange {
    const published = this.view.keys.filter((k) => k.state !== 'retired').map((k) => k.kid)
    return { current: this.view.current?.kid ?? '', kids: published, revoked }
  }

  /** Tells the other control planes (cluster signal) and local listeners (the feed) that keys changed. */
  private async announce(revoked: string[]): Promise<void> {
    const change = this.change(revoked)
    if (this.signal) {
      try {
        await this.signal.notify(KEYS_SIGNAL, JSON.stringify({ origin: this.origin, revoked }))
      } catch (err) {
        this.logger.warn(
          { err: err instanceof Error ? err.message : String(err) },
          'key change not signalled to the other control planes; they reload at their next check',
        )
      }
    }
    await this.tell(change)
  }

  private async tell(change: KeyChange): Promise<void> {
    await Promise.all(
      [...this.listeners].map(async (l) => {
        try {
          await l(change)
        } catch (err) {
          this.logger.warn({ err }, 'key change listener failed')
        }
      }),
    )
  }

  /**
   * Listens for other control planes' key changes. A revoked kid is blocked
   * at once, before the reload that brings its successor, so this control
   * plane never signs with it after hearing of it. While the signal is down
   * keys are reloaded every second instead.
   */
  attachSignal(signal: ClusterSignal): Promise<void> {
    this.signal = signal
    this.staleTimer = setInterval(() => {
      if (!signal.healthy) this.refresh().catch(() => {})
    }, 1_000)
    this.staleTimer.unref()
    return signal
      .listen(
        KEYS_SIGNAL,
        (payload) => this.heard(payload),
        () => {
          void this.heardResync()
        },
      )
      .then((off) => {
        this.unlisten = off
      })
  }

  private heard(payload: string): void {
    let msg: { origin?: unknown; revoked?: unknown }
    try {
      msg = JSON.parse(payload) as typeof msg
    } catch {
      this.logger.warn('malformed key signal ignored')
      return
    }
    if (msg.origin === this.origin) return
    const revoked = Array.isArray(msg.revoked) ? msg.revoked.filter((k): k is string => typeof k === 'string') : []
    const at = ++this.reloads
    for (const kid of revoked) this.blocked.set(kid, at)
    this.refresh().then(
      () => this.tell(this.change(revoked)),
      (err: unknown) => this.logger.error({ err }, "key reload after another control plane's change failed; retrying at the next check"),
    )
  }

  private async heardResync(): Promise<void> {
    try {
      await this.refresh()
    } catch (err) {
      this.logger.warn({ err }, 'key reload after the cluster signal reconnected failed')
    }
  }

  /** Under the lock: initial key, persisted transitions, scheduled next key. Resolves true when it wrote. */
  private async reconcileLocked(): Promise<boolean> {
    const now = this.clock.now()
    const rows = await this.store.keys.list()
    let view = effectiveKeys(rows, now, this.retentionMs)
    let wrote = false
    const events: AuditEventInput[] = []
    if (!view.current) {
      const k = this.generate('current', now, now)
      await this.store.keys.insert(k)
      events.push({ type: 'key.created', actor: 'system', subject: k.kid, data: { state: 'current', reason: 'initial', activates_at: now } })
      events.push({ type: 'key.activated', actor: 'system', subject: k.kid, data: { activates_at: now, previous: null } })
      wrote = true
      view = effectiveKeys([...rows, k], now, this.retentionMs)
    }
    for (const k of view.keys) {
      const stored = rows.find((r) => r.kid === k.kid)
      if (!stored || k.revoked) continue
      if (k.state === stored.state && k.deactivatedAt === stored.deactivatedAt && k.retiresAt === stored.retiresAt) continue
      await this.store.keys.update(k.kid, { state: k.state, deactivatedAt: k.deactivatedAt, retiresAt: k.retiresAt })
      wrote = true
      if (k.state === 'current' && k.storedState !== 'current') {
        const prev = view.keys.find((o) => o.kid !== k.kid && o.deactivatedAt === k.activatesAt && o.state !== 'next')
        events.push({ type: 'key.activated', actor: 'system', subject: k.kid, data: { activates_at: k.activatesAt, previous: prev?.kid ?? null } })
      } else if (k.state === 'retired' && k.storedState !== 'retired') {
        events.push({ type: 'key.retired', actor: 'system', subject: k.kid, data: { deactivated_at: k.deactivatedAt, retired_at: k.retiresAt } })
      }
    }
    const cur = view.current
    const hasNext = view.keys.some((k) => k.state === 'next')
    if (cur && !hasNext) {
      const dueAt = cur.activatesAt + this.config.keys.rotationIntervalSeconds * 1000
      const lead = this.config.keys.prePublishSeconds * 1000
      if (now >= dueAt - lead) {
        const activatesAt = Math.max(dueAt, now + lead)
        const k = this.generate('next', now, activatesAt)
        await this.store.keys.insert(k)
        wrote = true
        events.push({ type: 'key.created', actor: 'system', subject: k.kid, data: { state: 'next', reason: 'scheduled', activates_at: activatesAt } })
        events.push({
          type: 'key.rotated',
          actor: 'system',
          subject: k.kid,
          data: { emergency: false, scheduled: true, current: cur.kid, next: k.kid, activates_at: activatesAt },
        })
      }
    }
    for (const e of events) await this.sendAudit(e)
    return wrote
  }

  private generate(state: KeyState, now: number, activatesAt: number): SigningKey {
    const { publicKey, privateKey } = generateKeyPairSync('ed25519')
    const jwk = publicKey.export({ format: 'jwk' }) as { kty: string; crv: string; x: string }
    const kid = thumbprint(jwk)
    const der = privateKey.export({ format: 'der', type: 'pkcs8' })
    let encrypted: string
    try {
      encrypted = encryptPrivateKey(this.kek, kid, der)
      this.privateKeys.set(kid, ed25519Signer(der, this.config.keys.ed25519))
    } finally {
      der.fill(0)
    }
    return {
      kid,
      alg: 'EdDSA',
      state,
      publicJwk: { kty: jwk.kty, crv: jwk.crv, x: jwk.x },
      encryptedPrivateKey: encrypted,
      createdAt: now,
      activatesAt,
      deactivatedAt: null,
      retiresAt: null,
      revoked: false,
    }
  }

  // --------------------------------------------------------------- rotation

  async rotate(opts: { emergency: boolean; actor: string }): Promise<{ current: string; next: string | null; revoked: string | null }> {
    const deadline = Date.now() + 5000
    for (;;) {
      const res = await this.store.tryWithLock(KEYS_LOCK, () => this.rotateLocked(opts))
      if (res.ran) {
        try {
          await this.refresh()
        } finally {
          // The revoked key stays blocked until a reload that read the revocation.
          if (res.value.revoked) this.blocked.set(res.value.revoked, this.reloads)
        }
        await this.announce(res.value.revoked ? [res.value.revoked] : [])
        return res.value
      }
      if (Date.now() >= deadline) throw new Unavailable('another control plane is changing keys; retry')
      await sleep(50)
    }
  }

  private async rotateLocked(opts: { emergency: boolean; actor: string }): Promise<{ current: string; next: string | null; revoked: string | null }> {
    const now = this.clock.now()
    const rows = await this.store.keys.list()
    const view = effectiveKeys(rows, now, this.retentionMs)
    const cur = view.current
    const next = view.keys.filter((k) => k.state === 'next').sort((a, b) => a.activatesAt - b.activatesAt)[0] ?? null
    const events: AuditEventInput[] = []
    const actor = opts.actor
    let result: { current: string; next: string | null; revoked: string | null }
    if (opts.emergency || !cur) {
      const k = this.generate('current', now, now)
      await this.store.keys.insert(k)
      events.push({
        type: 'key.created',
        actor,
        subject: k.kid,
        data: { state: 'current', reason: opts.emergency ? 'emergency' : 'initial', activates_at: now },
      })
      let revoked: string | null = null
      if (cur && opts.emergency) {
        // Blocked before the write, so nothing here signs with it once it is revoked; rotate() hands the block to the next reload.
        this.blocked.set(cur.kid, UNTIL_WRITTEN)
        try {
          await this.store.keys.update(cur.kid, { state: 'retired', revoked: true, deactivatedAt: now, retiresAt: now })
        } catch (err) {
          this.blocked.delete(cur.kid)
          throw err
        }
        this.dropPrivate(cur.kid)
        revoked = cur.kid
        events.push({ type: 'key.revoked', actor, subject: cur.kid, data: { replaced_by: k.kid } })
      }
      events.push({
        type: 'key.rotated',
        actor,
        subject: k.kid,
        data: { emergency: opts.emergency, scheduled: false, current: k.kid, previous: cur?.kid ?? null, revoked },
      })
      events.push({ type: 'key.activated', actor, subject: k.kid, data: { activates_at: now, previous: cur?.kid ?? null } })
      result = { current: k.kid, next: next?.kid ?? null, revoked }
    } else {
      // Every control plane reloads within keys.checkIntervalSeconds, so an
      // activation at least that far ahead lets all of them switch at once,
      // and at least prePublishSeconds after publication keeps verifiers'
      // cached JWKS ahead of the first token the key signs.
      const lead = Math.max(this.config.keys.prePublishSeconds, this.config.keys.checkIntervalSeconds) * 1000
      let nextKid: string
      let activatesAt: number
      if (!next) {
        activatesAt = now + lead
        const k = this.generate('next', now, activatesAt)
        await this.store.keys.insert(k)
        nextKid = k.kid
        events.push({ type: 'key.created', actor, subject: k.kid, data: { state: 'next', reason: 'manual', activates_at: activatesAt } })
      } else {
        nextKid = next.kid
        const earliest = Math.max(now + this.config.keys.checkIntervalSeconds * 1000, next.createdAt + this.config.keys.prePublishSeconds * 1000)
        activatesAt = Math.min(next.activatesAt, earliest)
        if (activatesAt !== next.activatesAt) await this.store.keys.update(next.kid, { activatesAt })
      }
      events.push({
        type: 'key.rotated',
        actor,
        subject: nextKid,
        data: { emergency: false, scheduled: false, current: cur.kid, next: nextKid, activates_at: activatesAt },
      })
      result = { current: cur.kid, next: nextKid, revoked: null }
    }
    for (const e of events) await this.sendAudit(e)
    return result
  }

  // -------------------------------------------------------------- lifecycle

  start(): void {
    if (this.timer) return
    this.timer = setInterval(() => {
      this.maintain().catch((err: unknown) => this.logger.warn({ err }, 'key maintenance failed; serving cached keys'))
    }, this.config.keys.checkIntervalSeconds * 1000)
    this.timer.unref()
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer)
    this.timer = undefined
    if (this.staleTimer) clearInterval(this.staleTimer)
    this.staleTimer = undefined
    this.unlisten?.()
    this.unlisten = undefined
    await this.maintaining?.catch(() => {})
  }
}

/**
 * Creates the key manager: loads the KEK, reads the keys from the store and,
 * on a store without a signing key, creates one under the cluster lock (a
 * control plane that loses the race reloads the winner's key). Does not start
 * the scheduler: call start().
 */
export async function createKeyManager(deps: KeyManagerDeps): Promise<ManagedKeyManager> {
  const kek = deps.kek ?? (await loadKek(deps.config, { createIfMissing: false }))
  const km = new KeyManagerImpl(deps.config, deps.store, deps.clock, deps.logger, kek)
  if (deps.audit) km.attachAudit(deps.audit)
  if (deps.signal) await km.attachSignal(deps.signal)
  const deadline = Date.now() + 10_000
  for (;;) {
    await km.maintain()
    try {
      km.currentKid()
      return km
    } catch (err) {
      if (Date.now() >= deadline) throw new Unavailable('no signing key: another control plane holds the key lock and created none', { cause: err })
      await sleep(100)
    }
  }
}
