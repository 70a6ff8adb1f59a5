/**
 * The `requestState` of an MCP 2026-07-28 `InputRequiredResult` (Multi
 * Round-Trip Requests, SEP-2322) that the gateway answers an
 * `approval_needed` tool call with. The client echoes it on its retry; the
 * specification says a server MUST treat it as attacker-controlled and
 * protect its integrity when it influences authorization, which it does
 * here: it names the approval request whose override the gateway fetches and
 * spends for the retry.
 *
 * Sealed with AES-256-GCM under a key derived (HKDF-SHA256) from
 * `gateway.mcpStateSecret`, so every gateway sharing the secret opens every
 * state (the retry may reach another gateway: 2026-07-28 has no sessions).
 * Without the secret a random per-process key is used and only this
 * gateway opens its states. The payload binds the approval, the tenant and
 * agent, the tool, the canonical arguments' hash, the resource and the
 * policy version (what an override token binds), an expiry, and a random id
 * the gateway claims once in its replay cache when the state is spent.
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto'

/** What a sealed state carries. */
export interface RequestStateClaims {
  /** Approval request id. */
  aid: string
  tenant: string
  agent: string
  tool: string
  /** base64url SHA-256 of the RFC 8785 canonical arguments. */
  ph: string
  /** The call's resource (the route path). */
  res: string
  /** Policy version that asked for approval. */
  pv: string
  /** Epoch seconds. */
  exp: number
  /** Single-use id, claimed in the replay cache when the state is spent. */
  jti: string
}

/** Longest state accepted (characters); a sealed state of the gateway's own is far below it. */
export const MAX_REQUEST_STATE_CHARS = 4096

const PREFIX = 'aegis1.'
const IV_BYTES = 12
const TAG_BYTES = 16
const AAD = Buffer.from('aegis mcp requestState v1')
const FIELD = /^[\x20-\x7e]{1,2000}$/

/** Seals and opens request states with one key. */
export class RequestStateSealer {
  private readonly key: Buffer
  /** False when the key is random for this process (no `gateway.mcpStateSecret`). */
  readonly shared: boolean

  constructor(secret: string | undefined) {
    this.shared = secret !== undefined && secret.length > 0
    const ikm = this.shared ? Buffer.from(secret!, 'utf8') : randomBytes(32)
    // Its own HKDF label, so the secret never doubles as a key for anything else.
    this.key = Buffer.from(hkdfSync('sha256', ikm, Buffer.from('aegis-mcp'), Buffer.from('aegis mcp request state v1'), 32))
  }

  seal(claims: RequestStateClaims): string {
    const iv = randomBytes(IV_BYTES)
    const cipher = createCipheriv('aes-256-gcm', this.key, iv)
    cipher.setAAD(AAD)
    const body = Buffer.concat([cipher.update(JSON.stringify(claims), 'utf8'), cipher.final()])
    return PREFIX + Buffer.concat([iv, body, cipher.getAuthTag()]).toString('base64url')
  }

  /** The claims of an authentic, well-formed state, or null (tampered, foreign, malformed, too large). Expiry is the caller's check. */
  open(state: unknown): RequestStateClaims | null {
    if (typeof state !== 'string' || state.length > MAX_REQUEST_STATE_CHARS || !state.startsWith(PREFIX)) return null
    const b64 = state.slice(PREFIX.length)
    if (!/^[A-Za-z0-9_-]+$/.test(b64)) return null
    const raw = Buffer.from(b64, 'base64url')
    // Canonical encoding only: one state, one spelling.
    if (raw.length < IV_BYTES + TAG_BYTES + 2 || raw.toString('base64url') !== b64) return null
    let text: string
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.key, raw.subarray(0, IV_BYTES))
      decipher.setAAD(AAD)
      decipher.setAuthTag(raw.subarray(raw.length - TAG_BYTES))
      text = Buffer.concat([decipher.update(raw.subarray(IV_BYTES, raw.length - TAG_BYTES)), decipher.final()]).toString('utf8')
    } catch {
      return null
    }
    let c: unknown
    try {
      c = JSON.parse(text)
    } catch {
      return null
    }
    if (c === null || typeof c !== 'object' || Array.isArray(c)) return null
    const o = c as Record<string, unknown>
    for (const k of ['aid', 'tenant', 'agent', 'tool', 'ph', 'res', 'pv', 'jti'] as const) {
      if (typeof o[k] !== 'string' || !FIELD.test(o[k] as string)) return null
    }
    if (typeof o.exp !== 'number' || !Number.isSafeInteger(o.exp)) return null
    return o as unknown as RequestStateClaims
  }
}
