import { readFileSync } from 'node:fs'
import { hostname } from 'node:os'
import { randomBytes } from 'node:crypto'
import { normalHostname, normalOrigin } from '../lib/origin.js'
import { parseNetworks } from '../lib/outbound-address.js'
import { CONFIG_KEYS, envName, type AegisConfig, type KeySpec, type RouteConfig } from './schema.js'

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration (${problems.length} problem${problems.length === 1 ? '' : 's'})\n  ${problems.join('\n  ')}`)
    this.name = 'ConfigError'
  }
}

export interface LoadOptions {
  /** Path of a JSON config file (keys as in CONFIG_KEYS, nested objects). */
  file?: string
  /** Environment to read `AEGIS_*` from; default process.env. */
  env?: Record<string, string | undefined>
  /** Values that win over file and env (CLI flags, tests). Nested like the file. */
  overrides?: Record<string, unknown>
}

function getPath(obj: Record<string, unknown>, path: string): unknown {
  let cur: unknown = obj
  for (const part of path.split('.')) {
    if (cur === null || typeof cur !== 'object') return undefined
    cur = (cur as Record<string, unknown>)[part]
  }
  return cur
}

function setPath(obj: Record<string, unknown>, path: string, value: unknown): void {
  const parts = path.split('.')
  let cur = obj
  for (const part of parts.slice(0, -1)) {
    if (cur[part] === undefined || cur[part] === null || typeof cur[part] !== 'object') cur[part] = {}
    cur = cur[part] as Record<string, unknown>
  }
  cur[parts[parts.length - 1]!] = value
}

function leafPaths(obj: unknown, prefix = ''): string[] {
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) return [prefix]
  const out: string[] = []
  for (const [k, v] of Object.entries(obj as Record<string, unknown>)) {
    const p = prefix ? `${prefix}.${k}` : k
    const spec = CONFIG_KEYS.find((s) => s.path === p)
    if (spec && spec.type === 'json') out.push(p)
    else out.push(...leafPaths(v, p))
  }
  return out
}

function coerce(spec: KeySpec, raw: unknown, where: string, problems: string[]): unknown {
  const fail = (what: string): undefined => {
    problems.push(`${where}: expected ${what}, got ${JSON.stringify(spec.secret ? '<secret>' : raw)}`)
    return undefined
  }
  switch (spec.type) {
    case 'string':
      return typeof raw === 'string' ? raw : fail('a string')
    case 'url': {
      if (typeof raw !== 'string') return fail('a URL')
      try {
        new URL(raw)
      } catch {
        return fail('a URL')
      }
      return raw
    }
    case 'integer': {
      const n = typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : raw
      if (typeof n !== 'number' || !Number.isInteger(n)) return fail('an integer')
      if (spec.max !== undefined && (n > spec.max || (spec.min !== undefined && n < spec.min)))
        return fail(`an integer from ${spec.min ?? '-∞'} to ${spec.max}`)
      if (spec.min !== undefined && n < spec.min) return fail(`an integer ≥ ${spec.min}`)
      return n
    }
    case 'boolean': {
      if (typeof raw === 'boolean') return raw
      if (raw === 'true' || raw === '1') return true
      if (raw === 'false' || raw === '0') return false
      return fail('true or false')
    }
    case 'enum':
      return typeof raw === 'string' && spec.values?.includes(raw) ? raw : fail(`one of ${spec.values?.join(', ')}`)
    case 'json': {
      if (typeof raw !== 'string') return raw
      try {
        return JSON.parse(raw)
      } catch {
        return fail('JSON')
      }
    }
  }
}

/**
 * Reads the config file, then `AEGIS_*` variables, then overrides; rejects
 * unknown keys; runs cross-field checks; reports every problem at once.
 */
export function loadConfig(options: LoadOptions = {}): AegisConfig {
  const env = options.env ?? process.env
  const problems: string[] = []
  let fileValues: Record<string, unknown> = {}
  if (options.file) {
    try {
      fileValues = JSON.parse(readFileSync(options.file, 'utf8')) as Record<string, unknown>
    } catch (err) {
      problems.push(`${options.file}: cannot read JSON config (${(err as Error).message})`)
    }
    for (const p of leafPaths(fileValues)) {
      if (!CONFIG_KEYS.some((s) => s.path === p)) problems.push(`${options.file}: unknown key "${p}"`)
    }
  }
  const overrides = options.overrides ?? {}
  for (const p of leafPaths(overrides)) {
    if (p && !CONFIG_KEYS.some((s) => s.path === p)) problems.push(`override: unknown key "${p}"`)
  }
  const known = new Set<string>(CONFIG_KEYS.map((s) => envName(s)))
  for (const name of Object.keys(env)) {
    if (name.startsWith('AEGIS_') && !known.has(name) && !NON_CONFIG_ENV.has(name)) {
      problems.push(`${name}: unknown setting (known: see README "Configuration")`)
    }
  }

  const out: Record<string, unknown> = {}
  // Paths given by the file, the environment or an override (the others hold their defaults).
  const given = new Set<string>()
  for (const spec of CONFIG_KEYS as readonly KeySpec[]) {
    let value: unknown = spec.default
    let where = `default ${spec.path}`
    const fromFile = getPath(fileValues, spec.path)
    if (fromFile !== undefined) {
      value = fromFile
      where = `${options.file}: ${spec.path}`
    }
    const fromEnv = env[envName(spec)]
    if (fromEnv !== undefined && fromEnv !== '') {
      value = fromEnv
      where = envName(spec)
    }
    const fromOverride = getPath(overrides, spec.path)
    if (fromOverride !== undefined) {
      value = fromOverride
      where = `override ${spec.path}`
    }
    if (value === undefined) continue
    if (!where.startsWith('default ')) given.add(spec.path)
    const coerced = coerce(spec, value, where, problems)
    if (coerced !== undefined) setPath(out, spec.path, structuredClone(coerced))
  }

  const cfg = out as unknown as AegisConfig
  cfg.instanceId ??= `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`
  // The default issuer names the port the control plane really listens on
  // (a fixed default would advertise 7400 while listening elsewhere).
  if (cfg.issuer === undefined && cfg.control?.port !== undefined) {
    if (cfg.control.port === 0) problems.push('control.port 0 takes any free port, which the default issuer cannot name: set issuer (AEGIS_ISSUER)')
    else cfg.issuer = defaultIssuer(cfg.control.host, cfg.control.port)
  }
  // Cross-field checks.
  if (cfg.keys && cfg.jwks && cfg.keys.prePublishSeconds < cfg.jwks.maxAgeSeconds) {
    problems.push(
      `keys.prePublishSeconds (${cfg.keys.prePublishSeconds}) must be at least jwks.maxAgeSeconds (${cfg.jwks.maxAgeSeconds}), or verifiers meet ` +
        `an unknown kid`,
    )
  }
  // A lower maximum alone (AEGIS_TOKENS_MAX_TTL_SECONDS=60) also lowers the default lifetime; both set and contradicting is an error.
  if (cfg.tokens && !given.has('tokens.defaultTtlSeconds') && cfg.tokens.defaultTtlSeconds > cfg.tokens.maxTtlSeconds) {
    cfg.tokens.defaultTtlSeconds = cfg.tokens.maxTtlSeconds
  }
  if (cfg.tokens && cfg.tokens.defaultTtlSeconds > cfg.tokens.maxTtlSeconds) {
    problems.push(`tokens.defaultTtlSeconds (${cfg.tokens.defaultTtlSeconds}) must not exceed tokens.maxTtlSeconds (${cfg.tokens.maxTtlSeconds})`)
  }
  if (cfg.tokens && cfg.tokens.maxTtlSeconds > 3600) {
    problems.push(`tokens.maxTtlSeconds (${cfg.tokens.maxTtlSeconds}) must not exceed 3600: agent tokens live at most one hour`)
  }
  if (cfg.databaseUrl && !/^postgres(ql)?:\/\//.test(cfg.databaseUrl)) {
    problems.push(`AEGIS_DATABASE_URL: expected postgres://…, got "${cfg.databaseUrl.split(':')[0]}://…"`)
  }
  if (cfg.redisUrl && !/^rediss?:\/\//.test(cfg.redisUrl)) {
    problems.push(`AEGIS_REDIS_URL: expected redis://…`)
  }
  if ((cfg.tls?.cert === undefined) !== (cfg.tls?.key === undefined)) {
    problems.push('tls.cert and tls.key go together (AEGIS_TLS_CERT, AEGIS_TLS_KEY)')
  }
  if ((cfg.control?.tlsPort !== undefined || cfg.gateway?.tlsPort !== undefined) && !cfg.tls?.cert) {
    problems.push('a TLS port needs tls.cert and tls.key')
  }
  if (!Array.isArray(cfg.gateway?.routes)) problems.push('gateway.routes (AEGIS_ROUTES) must be a JSON array')
  else {
    cfg.gateway.routes.forEach((r, i) => {
      if (!r || typeof r.path !== 'string' || !r.path.startsWith('/')) problems.push(`gateway.routes[${i}].path must start with /`)
      try {
        new URL(r?.upstream)
      } catch {
        problems.push(`gateway.routes[${i}].upstream must be a URL`)
      }
      if (r && r.mode !== 'proxy' && r.mode !== 'mcp') problems.push(`gateway.routes[${i}].mode must be "proxy" or "mcp"`)
      if (r && r.resource !== undefined && (typeof r.resource !== 'string' || r.resource.length === 0 || r.resource.length > 1024))
        problems.push(`gateway.routes[${i}].resource must be a non-empty string (\`{path}\` stands for the request's path below the route)`)
      if (r && r.opaque_body !== undefined && typeof r.opaque_body !== 'boolean') problems.push(`gateway.routes[${i}].opaque_body must be true or false`)
      if (r && r.mode === 'mcp') problems.push(...mcpRouteProblems(r, i))
    })
  }
  if (Array.isArray(cfg.gateway?.routes))
    cfg.gateway.routes.forEach((r, i) => {
      if (r) problems.push(...originProblems(r, i))
    })
  if (cfg.metrics?.token !== undefined && !/^[A-Za-z0-9._~+/=-]{16,512}$/.test(cfg.metrics.token)) {
    problems.push('metrics.token (AEGIS_METRICS_TOKEN) must be 16 to 512 characters of [A-Za-z0-9._~+/=-] (it travels as a bearer token)')
  }
  if (!Array.isArray(cfg.tls?.trustedProxies)) problems.push('tls.trustedProxies must be a JSON array of addresses')
  const tcas: unknown = cfg.tls?.tenantClientCas
  if (tcas === null || typeof tcas !== 'object' || Array.isArray(tcas) || Object.values(tcas).some((v) => typeof v !== 'string')) {
    problems.push('tls.tenantClientCas must be a JSON object of tenant → CA bundle file path')
  }
  const tcrls: unknown = cfg.tls?.tenantClientCrls
  if (tcrls === null || typeof tcrls !== 'object' || Array.isArray(tcrls) || Object.values(tcrls).some((v) => typeof v !== 'string')) {
    problems.push('tls.tenantClientCrls must be a JSON object of tenant → CRL file path')
  }
  const nets: unknown = cfg.tokenExchange?.jwksAllowedNetworks
  if (!Array.isArray(nets)) problems.push('tokenExchange.jwksAllowedNetworks must be a JSON array of CIDR ranges')
  else for (const p of parseNetworks(nets).problems) problems.push(`tokenExchange.jwksAllowedNetworks: ${p}`)
  if (problems.length > 0) throw new ConfigError(problems)
  return deepFreeze(cfg)
}

/**
 * `http://host:port` of a control plane listening on `host`: loopback for a
 * wildcard address (what a client on the same machine reaches), IPv6 in brackets.
 */
export function defaultIssuer(host: string, port: number): string {
  let h = host
  if (h === '' || h === '0.0.0.0') h = '127.0.0.1'
  else if (h === '::') h = '::1'
  return `http://${h.includes(':') ? `[${h}]` : h}:${port}`
}

/**
 * The bearer token a gateway presents to the control plane: `gatewayToken`,
 * else `adminToken`. loadConfig cannot require one, not knowing whether the
 * process runs a gateway, so the gateway asks here at start; without either
 * it is a configuration error like loadConfig's.
 */
export function gatewayBearer(config: Pick<AegisConfig, 'gatewayToken' | 'adminToken'>): string {
  const bearer = config.gatewayToken ?? config.adminToken
  if (!bearer) throw new ConfigError(['the gateway needs a bearer token for the control plane: set AEGIS_GATEWAY_TOKEN (role gateway) or AEGIS_ADMIN_TOKEN'])
  return bearer
}

/** An MCP route's own keys (gateway/modes/mcp takes them as checked here). */
function mcpRouteProblems(r: RouteConfig, i: number): string[] {
  const out: string[] = []
  if (typeof r.path === 'string' && r.path.replace(/\/+$/, '') === '') out.push(`gateway.routes[${i}]: an MCP route needs a path other than /`)
  const allow: unknown = r.allow_methods
  if (allow !== undefined && (!Array.isArray(allow) || allow.some((m) => typeof m !== 'string' || m.length === 0 || m.length > 256))) {
    out.push(`gateway.routes[${i}].allow_methods must be an array of JSON-RPC method names (a trailing /* allows a prefix)`)
  }
  const scopes: unknown = r.scopes
  if (scopes !== undefined && (!Array.isArray(scopes) || scopes.some((x) => typeof x !== 'string'))) {
    out.push(`gateway.routes[${i}].scopes must be an array of strings`)
  }
  return out
}

/**
 * `allowed_origins` / `allowed_hosts` of a route (DNS-rebinding protection,
 * MCP routes): origins as `scheme://host[:port]` (http or https, nothing
 * after), hosts as bare hostnames (IPv6 in brackets, no port).
 */
function originProblems(r: RouteConfig, i: number): string[] {
  const out: string[] = []
  const list = (key: 'allowed_origins' | 'allowed_hosts', check: (v: string) => boolean, what: string): void => {
    const v: unknown = r[key]
    if (v === undefined) return
    if (!Array.isArray(v) || v.length > 256 || v.some((x) => typeof x !== 'string' || x.length > 512 || !check(x))) {
      out.push(`gateway.routes[${i}].${key} must be an array of ${what}`)
    }
  }
  list('allowed_origins', (o) => normalOrigin(o) !== null, 'origins like "https://app.example" (scheme, host and optional port, nothing else)')
  list('allowed_hosts', (h) => normalHostname(h) !== null, 'hostnames without a port, like "gw.example" or "[::1]"')
  if (r.mode !== 'mcp' && (r.allowed_origins !== undefined || r.allowed_hosts !== undefined)) {
    out.push(`gateway.routes[${i}]: allowed_origins and allowed_hosts apply to MCP routes only`)
  }
  return out
}

/** `AEGIS_*` variables read outside the config (test switches). */
const NON_CONFIG_ENV = new Set(['AEGIS_REQUIRE_SERVICES', 'AEGIS_TEST_DATABASE_URL', 'AEGIS_TEST_REDIS_URL', 'AEGIS_BENCH_SECONDS', 'AEGIS_CONFIG'])

function deepFreeze<T>(obj: T): T {
  if (obj && typeof obj === 'object') {
    for (const v of Object.values(obj as Record<string, unknown>)) deepFreeze(v)
    Object.freeze(obj)
  }
  return obj
}
