import { parseArgs } from 'node:util'
import { randomBytes } from 'node:crypto'
import { hostname } from 'node:os'
import { systemClock } from '../../lib/clock.js'
import { silentLogger } from '../../observability/logger.js'
import { Metrics } from '../../observability/metrics.js'
import { openStore } from '../../store/index.js'
import { openClusterSignal } from '../../store/signal.js'
import type { Store } from '../../store/types.js'
import { createAuditWriter, createKeyManager, effectiveKeys, type PublicKeyInfo } from '../../control-plane/index.js'
import type { CliContext } from '../context.js'
import { epochSeconds, epochSecondsOrNull } from '../../lib/clock.js'

const HELP = `aegis keys list [--json]
aegis keys rotate [--emergency]

Works on the store the configuration names (AEGIS_DATA_DIR or AEGIS_DATABASE_URL);
rotate also needs the KEK (AEGIS_KEK or AEGIS_KEK_FILE, or <dataDir>/kek).

  list               every key with its state (next, current, previous, retired)
                     and schedule; no private material
  rotate             publishes a next key that starts signing after
                     keys.prePublishSeconds (or brings a pending one forward);
                     running control planes pick it up within keys.checkIntervalSeconds
  rotate --emergency a fresh key signs at once and the current kid is revoked
                     (running control planes switch within keys.checkIntervalSeconds)`

function iso(ms: number | null): string {
  return ms === null ? '-' : new Date(ms).toISOString()
}

function table(keys: PublicKeyInfo[]): string[] {
  const rows = [['KID', 'STATE', 'ACTIVATES', 'DEACTIVATED', 'RETIRES', 'REVOKED']]
  for (const k of keys) rows.push([k.kid, k.state, iso(k.activatesAt), iso(k.deactivatedAt), iso(k.retiresAt), k.revoked ? 'yes' : 'no'])
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)))
  return rows.map((r) =>
    r
      .map((c, i) => c.padEnd(widths[i]!))
      .join('  ')
      .trimEnd(),
  )
}

function wire(k: PublicKeyInfo): Record<string, unknown> {
  return {
    kid: k.kid,
    state: k.state,
    revoked: k.revoked,
    created_at: epochSeconds(k.createdAt),
    activates_at: epochSeconds(k.activatesAt),
    deactivated_at: epochSecondsOrNull(k.deactivatedAt),
    retires_at: epochSecondsOrNull(k.retiresAt),
    public_jwk: k.publicJwk,
  }
}

/** `aegis keys list|rotate [--emergency]`; resolves to the exit code (0 ok, 1 failed, 2 usage). */
const KEYS_ARGS = {
  allowPositionals: true,
  strict: true,
  options: { help: { type: 'boolean', short: 'h' }, emergency: { type: 'boolean' }, json: { type: 'boolean' } },
} as const

export async function keysCommand(argv: string[], ctx: CliContext): Promise<number> {
  let parsed: ReturnType<typeof parseArgs<typeof KEYS_ARGS>>
  try {
    parsed = parseArgs({ ...KEYS_ARGS, args: argv })
  } catch (err) {
    ctx.err(`aegis keys: ${(err as Error).message}\n\n${HELP}`)
    return 2
  }
  const { values, positionals } = parsed
  const sub = positionals[0]
  if (values.help || sub === 'help') {
    ctx.out(HELP)
    return 0
  }
  if ((sub !== 'list' && sub !== 'rotate') || positionals.length > 1) {
    ctx.err(`aegis keys: ${sub === undefined ? 'missing subcommand' : `unknown subcommand "${positionals.join(' ')}"`}\n\n${HELP}`)
    return 2
  }
  if (sub === 'list' && values.emergency) {
    ctx.err('aegis keys: --emergency goes with rotate')
    return 2
  }
  const { config } = ctx
  let store: Store | undefined
  try {
    store = await openStore(config, silentLogger(), { shortLived: true })
    if (sub === 'list') {
      const t = config.tokens
      const retention = (Math.max(t.maxTtlSeconds, t.overrideTtlSeconds) + t.clockSkewSeconds) * 1000
      const view = effectiveKeys(await store.keys.list(), systemClock.now(), retention)
      const keys: PublicKeyInfo[] = view.keys.map(({ encryptedPrivateKey: _secret, storedState: _s, ...k }) => k).sort((a, b) => b.activatesAt - a.activatesAt)
      if (values.json) ctx.out(JSON.stringify({ keys: keys.map(wire) }, null, 2))
      else if (keys.length === 0) ctx.out('no keys yet: the control plane creates one at first start')
      else for (const line of table(keys)) ctx.out(line)
      return 0
    }
    const logger = silentLogger()
    // Running control planes on the same PostgreSQL hear the change at once (and tell their gateways).
    const signal = await openClusterSignal(config, logger)
    const keys = await createKeyManager({ config, store, clock: systemClock, logger, metrics: new Metrics(), signal })
    // The CLI writes its own chain: the server's chain belongs to the server process.
    const audit = await createAuditWriter({
      store,
      keys,
      clock: systemClock,
      logger,
      chainId: `cli-${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`,
      checkpointIntervalMs: config.audit.checkpointIntervalMs,
    })
    keys.attachAudit(audit)
    const actor = `cli:${process.env.USER ?? 'unknown'}`
    try {
      const r = await keys.rotate({ emergency: values.emergency === true, actor })
      if (r.revoked) {
        const now = systemClock.now()
        const t = config.tokens
        // Gateways load the revocation list when they (re)connect; a running control plane's live feed does not see this row.
        await store.revocations.add({
          type: 'kid',
          value: r.revoked,
          tenant: null,
          agentId: null,
          reason: 'emergency key rotation (cli)',
          createdAt: now,
          expiresAt: now + (Math.max(t.maxTtlSeconds, t.overrideTtlSeconds) + t.clockSkewSeconds) * 1000,
        })
        await audit.append({ type: 'token.revoked', actor, subject: r.revoked, data: { revocation_type: 'kid', reason: 'emergency key rotation (cli)' } })
        ctx.out(`emergency rotation: ${r.current} signs now; ${r.revoked} revoked`)
        ctx.out(
          config.databaseUrl
            ? 'running control planes switched at once (PostgreSQL notification); gateways load the kid revocation when they reconnect: for an ' +
                'instant cut everywhere use POST /admin/v1/keys/rotate?emergency=true'
            : `running control planes switch within ${config.keys.checkIntervalSeconds}s; for an instant cut use POST /admin/v1/keys/rotate?emergency=true`,
        )
      } else {
        const next = keys.list().find((k) => k.kid === r.next)
        ctx.out(`next key ${r.next} published; it starts signing at ${iso(next?.activatesAt ?? null)} (current: ${r.current})`)
      }
      if (values.json) ctx.out(JSON.stringify(r))
    } finally {
      await audit.close()
      await keys.stop()
      await signal.close()
    }
    return 0
  } catch (err) {
    ctx.err(`aegis keys ${sub}: ${err instanceof Error ? err.message : String(err)}`)
    return 1
  } finally {
    await store?.close().catch(() => {})
  }
}
