import { parseArgs } from 'node:util'
import { closeSync, existsSync, openSync, readFileSync, renameSync, writeFileSync, writeSync } from 'node:fs'
import { silentLogger } from '../../observability/logger.js'
import { openStore } from '../../store/index.js'
import type { Store } from '../../store/types.js'
import {
  exportAudit,
  headsFile,
  parseHeads,
  parseJwks,
  verifyAuditExport,
  verifyAuditStore,
  type AuditVerifyReport,
  type ChainHead,
  type Jwks,
} from '../../control-plane/index.js'
import type { CliContext } from '../context.js'

const HELP = `aegis audit verify [--jwks KEYS] [--file EXPORT] [--heads HEADS] [--json]
aegis audit export [--out FILE]
aegis audit verify-export EXPORT [--jwks KEYS] [--heads HEADS] [--json]
aegis audit pin-keys --jwks KEYS [--from URL | --from-store]

Works on the store the configuration names (AEGIS_DATA_DIR or AEGIS_DATABASE_URL).

  verify         proves every audit chain whole: contiguous sequence, hash links,
                 recomputed hashes, and every signed checkpoint (its signature and
                 the event it names). Exit 0 only when whole; otherwise exit 1 and
                 print the first bad event.
                 --jwks KEYS    check checkpoints against this JWK Set only, kept
                                outside the database: a checkpoint re-signed with
                                any other key fails (without it the keys come from
                                the database, which an insider can rewrite)
                 --file EXPORT  verify an export file offline instead of the store
                 --heads HEADS  every chain must still reach the heads recorded in
                                HEADS by an earlier run (catches the newest events
                                cut together with their checkpoints); rewritten
                                with the new heads when the log is whole
  export         writes JSON Lines (a header with the public keys, the events,
                 every signed checkpoint) to FILE or standard output
  verify-export  same as verify --file EXPORT
  pin-keys       adds the public keys of the issuer's JWKS (default
                 ISSUER/.well-known/jwks.json, or --from URL) to KEYS, never
                 removing one; refuses a kid whose key changed. --from-store pins
                 the keys in the database instead (trust on first use: only when
                 you trust the database as it is now)`

function printReport(ctx: CliContext, report: AuditVerifyReport, json: boolean, keysFrom: string | undefined): number {
  if (json) {
    ctx.out(JSON.stringify(report, null, 2))
    return report.ok ? 0 : 1
  }
  const where =
    report.keySource === 'pinned'
      ? `against the pinned keys in ${keysFrom}`
      : `against keys read from the ${report.keySource === 'database' ? 'database' : "export's header"}`
  const summary =
    `${report.events} events in ${report.chains.length} chain${report.chains.length === 1 ? '' : 's'}, ${report.checkpoints} signed ` +
    `checkpoint${report.checkpoints === 1 ? '' : 's'} verified ${where}`
  if (report.keySource !== 'pinned') {
    ctx.err(
      `note: keys that come with the log prove nothing against someone who can rewrite it; pin them (aegis audit pin-keys --jwks KEYS) and verify ` +
        `with --jwks KEYS`,
    )
  }
  if (report.ok) {
    ctx.out(`audit log whole: ${summary}`)
    return 0
  }
  const b = report.firstBad!
  ctx.err(`audit log BROKEN: ${summary}`)
  ctx.err(`first bad event: id ${b.id ?? '(missing)'} chain ${b.chainId} seq ${b.chainSeq}: ${b.reason}`)
  for (const p of report.problems.filter((x) => x !== b)) ctx.err(`  also: id ${p.id ?? '(missing)'} chain ${p.chainId} seq ${p.chainSeq}: ${p.reason}`)
  return 1
}

/** Writes `text` to `file` through a temporary file and a rename, so a reader never sees half of it. */
function writeAtomically(file: string, text: string): void {
  const tmp = `${file}.${process.pid}.tmp`
  writeFileSync(tmp, text, { mode: 0o644 })
  renameSync(tmp, file)
}

const MAX_JWKS_BYTES = 1024 * 1024

/** The key material of a JWK, without metadata (kid, alg, use), for comparing two JWKs of one kid. */
function material(k: Record<string, unknown>): string {
  return JSON.stringify([k.kty, k.crv, k.x, k.y, k.n, k.e])
}

async function pinKeys(ctx: CliContext, file: string, from: string | undefined, fromStore: boolean): Promise<number> {
  let incoming: Jwks
  let source: string
  if (fromStore) {
    const store = await openStore(ctx.config, silentLogger(), { shortLived: true })
    try {
      incoming = { keys: (await store.keys.list()).map((k) => ({ ...k.publicJwk, kid: k.kid, alg: 'EdDSA', use: 'sig' })) }
    } finally {
      await store.close().catch(() => {})
    }
    source = 'the database'
  } else {
    source = from ?? `${ctx.config.issuer.replace(/\/+$/, '')}/.well-known/jwks.json`
    const res = await fetch(source, { signal: AbortSignal.timeout(10_000), redirect: 'error' })
    if (res.status !== 200) throw new Error(`${source} answered ${res.status}`)
    const text = await res.text()
    if (text.length > MAX_JWKS_BYTES) throw new Error(`${source} sent more than ${MAX_JWKS_BYTES} bytes`)
    incoming = parseJwks(text, source)
  }
  const pinned = existsSync(file) ? parseJwks(readFileSync(file, 'utf8'), file) : { keys: [] }
  const byKid = new Map(pinned.keys.filter((k) => typeof k.kid === 'string').map((k) => [k.kid as string, k]))
  const added: string[] = []
  for (const k of incoming.keys) {
    if (typeof k.kid !== 'string' || k.d !== undefined) continue
    const have = byKid.get(k.kid)
    if (have) {
      if (material(have) !== material(k)) {
        ctx.err(`aegis audit pin-keys: kid ${k.kid} from ${source} is not the key pinned under that kid in ${file}; nothing written`)
        return 1
      }
      continue
    }
    const { kty, crv, x, y, n, e, kid, alg, use } = k
    const pub = Object.fromEntries(Object.entries({ kty, crv, x, y, n, e, kid, alg, use }).filter(([, v]) => v !== undefined))
    pinned.keys.push(pub)
    byKid.set(k.kid, pub)
    added.push(k.kid)
  }
  if (added.length > 0 || !existsSync(file)) writeAtomically(file, `${JSON.stringify(pinned, null, 2)}\n`)
  ctx.out(
    `pinned ${added.length} new key${added.length === 1 ? '' : 's'} from ${source}${added.length ? ` (${added.join(', ')})` : ''}; ${file} ` +
      `holds ${pinned.keys.length}`,
  )
  return 0
}

/** `aegis audit verify|export|verify-export|pin-keys`; resolves to the exit code (0 ok/whole, 1 broken or failed, 2 usage). */
const AUDIT_ARGS = {
  allowPositionals: true,
  strict: true,
  options: {
    help: { type: 'boolean', short: 'h' },
    out: { type: 'string', short: 'o' },
    jwks: { type: 'string' },
    json: { type: 'boolean' },
    file: { type: 'string' },
    heads: { type: 'string' },
    from: { type: 'string' },
    'from-store': { type: 'boolean' },
  },
} as const

export async function auditCommand(argv: string[], ctx: CliContext): Promise<number> {
  let parsed: ReturnType<typeof parseArgs<typeof AUDIT_ARGS>>
  try {
    parsed = parseArgs({ ...AUDIT_ARGS, args: argv })
  } catch (err) {
    ctx.err(`aegis audit: ${(err as Error).message}\n\n${HELP}`)
    return 2
  }
  const { values, positionals } = parsed
  const [sub, ...rest] = positionals
  if (values.help || sub === 'help') {
    ctx.out(HELP)
    return 0
  }
  const usage = (msg: string): number => {
    ctx.err(`aegis audit: ${msg}\n\n${HELP}`)
    return 2
  }
  if (sub !== 'verify' && sub !== 'export' && sub !== 'verify-export' && sub !== 'pin-keys')
    return usage(sub === undefined ? 'missing subcommand' : `unknown subcommand "${sub}"`)
  if (sub !== 'export' && values.out) return usage('--out goes with export')
  if (sub !== 'pin-keys' && (values.from !== undefined || values['from-store'])) return usage('--from and --from-store go with pin-keys')
  if (sub === 'export' && (values.jwks || values.file || values.heads)) return usage('export takes only --out')
  if (sub === 'pin-keys') {
    if (rest.length > 0) return usage(`unexpected argument "${rest[0]}"`)
    if (!values.jwks) return usage('pin-keys needs --jwks KEYS (the file to add the keys to)')
    if (values.from !== undefined && values['from-store']) return usage('give --from URL or --from-store, not both')
    if (values.file || values.heads) return usage('pin-keys takes --jwks and --from / --from-store only')
    try {
      return await pinKeys(ctx, values.jwks, values.from, values['from-store'] === true)
    } catch (err) {
      ctx.err(`aegis audit pin-keys: ${err instanceof Error ? err.message : String(err)}`)
      return 1
    }
  }
  let exportFile = values.file
  if (sub === 'verify-export') {
    if (rest.length !== 1 || values.file) return usage('verify-export takes one EXPORT file')
    exportFile = rest[0]
  } else if (rest.length > 0) {
    return usage(`unexpected argument "${rest[0]}"`)
  }

  let jwks: Jwks | undefined
  let previousHeads: ChainHead[] | undefined
  try {
    if (values.jwks) jwks = parseJwks(readFileSync(values.jwks, 'utf8'), values.jwks)
    if (values.heads && existsSync(values.heads)) previousHeads = parseHeads(readFileSync(values.heads, 'utf8'), values.heads)
  } catch (err) {
    ctx.err(`aegis audit ${sub}: ${(err as Error).message}`)
    return 1
  }
  const opts = { ...(jwks ? { jwks } : {}), ...(previousHeads ? { heads: previousHeads } : {}) }

  const finish = (report: AuditVerifyReport): number => {
    const code = printReport(ctx, report, values.json === true, values.jwks)
    if (code === 0 && values.heads) writeAtomically(values.heads, headsFile(report, previousHeads))
    return code
  }

  if (exportFile !== undefined) {
    let lines: string[]
    try {
      lines = readFileSync(exportFile, 'utf8').split('\n')
    } catch (err) {
      ctx.err(`aegis audit ${sub}: ${(err as Error).message}`)
      return 1
    }
    return finish(await verifyAuditExport(lines, opts))
  }

  let store: Store | undefined
  try {
    store = await openStore(ctx.config, silentLogger(), { shortLived: true })
    if (sub === 'verify') return finish(await verifyAuditStore(store, opts))
    if (values.out) {
      // The log names tenants and agents: readable by the owner only.
      const fd = openSync(values.out, 'w', 0o600)
      try {
        const r = await exportAudit(store, (line) => {
          writeSync(fd, `${line}\n`)
        })
        ctx.err(`exported ${r.events} events and ${r.checkpoints} checkpoints to ${values.out}`)
      } finally {
        closeSync(fd)
      }
    } else {
      await exportAudit(store, ctx.out)
    }
    return 0
  } catch (err) {
    ctx.err(`aegis audit ${sub}: ${err instanceof Error ? err.message : String(err)}`)
    return 1
  } finally {
    await store?.close().catch(() => {})
  }
}
