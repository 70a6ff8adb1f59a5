/**
 * Every configuration key: its path in the config file, its type, default and
 * one line of documentation. The environment variable is `AEGIS_` + the path in
 * SCREAMING_SNAKE_CASE (`keys.prePublishSeconds` → `AEGIS_KEYS_PRE_PUBLISH_SECONDS`)
 * unless `env` names another (the names docs/reference.md fixes).
 *
 * This table is the one source: the loader reads it, the README's table is
 * printed from it (scripts/config-table.ts), and {@link AegisConfig} is
 * derived from it, so a key cannot exist in one and not the others.
 */
export type KeyType = 'string' | 'integer' | 'boolean' | 'json' | 'url' | 'enum'

export interface KeySpec {
  path: string
  type: KeyType
  doc: string
  default?: unknown
  env?: string
  values?: readonly string[]
  min?: number
  max?: number
  /** Never printed (config dump, errors). */
  secret?: boolean
  /** No default here, but loadConfig always sets it (from other keys or the host), so the loaded config always has it. */
  derived?: true
}

export const CONFIG_KEYS = [
  // Where state lives
  { path: 'dataDir', type: 'string', default: './.aegis', doc: 'Directory for the embedded SQLite store, the KEK file and the dev credentials.' },
  { path: 'databaseUrl', type: 'url', doc: 'postgres://… to use PostgreSQL; unset = embedded SQLite in dataDir.', secret: true },
  { path: 'redisUrl', type: 'url', doc: 'redis://… shared replay cache, deny list and feed; unset = in-process.', secret: true },
  { path: 'instanceId', type: 'string', derived: true, doc: 'Name of this process in audit chains and gateway acknowledgements; default host-pid-random.' },
  { path: 'logLevel', type: 'enum', values: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], default: 'info', doc: 'pino log level.' },

  // Identity of the issuer
  {
    path: 'issuer',
    type: 'url',
    derived: true,
    doc:
      'The `iss` of every token and the base of the metadata URLs; default http://<control.host>:<control.port> (127.0.0.1 for a wildcard ' +
      'host), so it names the port the control plane listens on. Required with control.port 0.',
  },
  { path: 'audience', type: 'string', default: 'aegis-gateway', doc: 'What gateways accept and what tokens get when the request names no audience.' },
  { path: 'kek', type: 'string', doc: 'Key-encryption key for private keys at rest: 32 bytes, base64 or hex.', secret: true },
  { path: 'kekFile', type: 'string', doc: 'File holding the KEK (created with mode 0600 by `aegis dev` under dataDir when neither kek nor kekFile is set).' },
  { path: 'adminToken', type: 'string', doc: 'Seeds a global admin token at start, for automation.', secret: true },
  {
    path: 'gatewayToken',
    type: 'string',
    doc: 'Bearer token a gateway presents to the control plane (role gateway); seeded on the control plane like adminToken.',
    secret: true,
  },
  {
    path: 'controlPlaneUrl',
    type: 'url',
    doc:
      'Control plane a gateway follows (JWKS, feed, manifests); default = issuer, except in one `--role all` process (aegis dev), whose gateway ' +
      'follows its own control plane where it is bound.',
  },

  // Listeners
  { path: 'control.host', type: 'string', default: '127.0.0.1', doc: 'Control-plane listen address.' },
  { path: 'control.port', type: 'integer', default: 7400, min: 0, max: 65535, doc: 'Control-plane HTTP port (0 = any free port).' },
  { path: 'control.tlsPort', type: 'integer', min: 0, max: 65535, doc: 'Control-plane HTTPS port (with tls.cert/tls.key), requesting client certificates.' },
  { path: 'gateway.host', type: 'string', default: '127.0.0.1', doc: 'Gateway listen address.' },
  { path: 'gateway.port', type: 'integer', default: 7401, min: 0, max: 65535, doc: 'Gateway HTTP port (0 = any free port).' },
  { path: 'gateway.tlsPort', type: 'integer', min: 0, max: 65535, doc: 'Gateway HTTPS port (with tls.cert/tls.key), requesting client certificates.' },
  {
    path: 'gateway.workers',
    type: 'integer',
    min: 1,
    max: 256,
    doc:
      'Worker processes of `aegis serve --role gateway` (or --workers N), sharing its ports; default the number of cores with redisUrl, ' +
      'else 1. More than one needs redisUrl: the replay cache must be shared.',
  },
  { path: 'tls.cert', type: 'string', doc: 'PEM certificate file for the TLS listeners.' },
  { path: 'tls.key', type: 'string', doc: 'PEM private key file for the TLS listeners.', secret: true },
  { path: 'tls.clientCa', type: 'string', doc: 'PEM bundle of CAs trusted for client certificates (RFC 8705).' },
  { path: 'tls.trustedProxies', type: 'json', default: [] as string[], doc: 'Addresses whose forwarded client-certificate header is believed (JSON array).' },
  {
    path: 'tls.clientCertHeader',
    type: 'string',
    doc:
      'Header carrying the client certificate from a trusted proxy: x-forwarded-client-cert (Envoy) or e.g. x-ssl-client-cert (nginx ' +
      '$ssl_client_escaped_cert).',
  },
  {
    path: 'tls.tenantClientCas',
    type: 'json',
    default: {} as Record<string, string>,
    doc: 'Per-tenant PEM CA bundle files for tls_client_auth: {"tenant": "/path/ca.pem"}; tenants not listed use tls.clientCa.',
  },
  {
    path: 'tls.clientCrl',
    type: 'string',
    doc: 'CRL file (PEM, one or more CRLs, or one DER CRL) checked for every tls_client_auth certificate chain; a revoked certificate gets invalid_client.',
  },
  {
    path: 'tls.tenantClientCrls',
    type: 'json',
    default: {} as Record<string, string>,
    doc: 'Per-tenant CRL files: {"tenant": "/path/crl.pem"}, checked together with tls.clientCrl.',
  },
  {
    path: 'tls.fileCheckSeconds',
    type: 'integer',
    default: 5,
    min: 0,
    doc:
      'How often CA bundle, CRL and TLS certificate/key files are looked at and reloaded when changed (0 = at every tls_client_auth use; TLS ' +
      'listeners look at most every second).',
  },
  {
    path: 'dpop.nonceSecret',
    type: 'string',
    doc: 'HMAC secret for stateless DPoP nonces, the same on every control plane and gateway; unset = random per process.',
    secret: true,
  },
  { path: 'dpop.requireNonce', type: 'boolean', default: false, doc: 'Require a server-issued DPoP nonce (RFC 9449 §8) in every proof.' },
  { path: 'dpop.proofMaxAgeSeconds', type: 'integer', default: 60, min: 1, doc: "How old a DPoP proof's iat may be (plus clock skew)." },

  // Tokens
  { path: 'tokens.defaultTtlSeconds', type: 'integer', default: 600, min: 1, doc: 'Access-token lifetime when the agent asks for nothing shorter.' },
  { path: 'tokens.maxTtlSeconds', type: 'integer', default: 3600, min: 1, doc: 'Upper bound for any agent access token.' },
  { path: 'tokens.clockSkewSeconds', type: 'integer', default: 30, min: 0, doc: 'Allowed clock skew for exp/nbf/iat checks.' },
  { path: 'tokens.maxTokenBytes', type: 'integer', default: 8192, min: 512, doc: 'Tokens larger than this are refused unparsed.' },
  { path: 'tokens.overrideTtlSeconds', type: 'integer', default: 300, min: 1, doc: 'Lifetime of one-time approval override tokens.' },

  // Token exchange: fetching trusted issuers' jwks_uri
  {
    path: 'tokenExchange.jwksAllowedNetworks',
    type: 'json',
    default: [] as string[],
    doc:
      "Address ranges a trusted issuer's jwks_uri may resolve to besides public addresses, plain http allowed there: JSON array of CIDRs, e.g. " +
      '["10.1.0.0/16"]; aegis dev allows loopback.',
  },
  {
    path: 'tokenExchange.jwksTimeoutMs',
    type: 'integer',
    default: 3000,
    min: 100,
    doc: 'Longest a jwks_uri fetch may take (resolution, connection and body).',
  },
  { path: 'tokenExchange.jwksMaxBytes', type: 'integer', default: 65536, min: 1024, doc: 'Largest jwks_uri answer accepted.' },

  // Keys and JWKS
  { path: 'keys.alg', type: 'enum', values: ['EdDSA'], default: 'EdDSA', doc: 'Signing algorithm (Ed25519).' },
  {
    path: 'keys.ed25519',
    type: 'enum',
    values: ['auto', 'node:crypto', 'libsodium'],
    default: 'auto',
    doc:
      'Ed25519 implementation for signing (control plane) and verifying (gateway, introspection): auto = libsodium where sodium-native loads, ' +
      'else node:crypto; node:crypto (e.g. with a FIPS-validated OpenSSL); libsodium = refuse to start without it.',
  },
  { path: 'keys.rotationIntervalSeconds', type: 'integer', default: 86400, min: 60, doc: 'How long a key signs before the scheduled rotation.' },
  { path: 'keys.prePublishSeconds', type: 'integer', default: 3600, min: 1, doc: 'How long `next` is published before it signs; at least jwks.maxAgeSeconds.' },
  { path: 'keys.checkIntervalSeconds', type: 'integer', default: 30, min: 1, doc: 'How often the rotation scheduler looks at the key states.' },
  { path: 'jwks.maxAgeSeconds', type: 'integer', default: 300, min: 0, doc: 'Cache-Control max-age of the JWKS; below keys.prePublishSeconds.' },

  // Limits
  { path: 'limits.bodyBytes', type: 'integer', default: 65536, min: 1024, doc: 'Largest request body accepted.' },
  { path: 'limits.jsonDepth', type: 'integer', default: 32, min: 2, doc: 'Deepest JSON nesting accepted.' },
  {
    path: 'rateLimit.perClient',
    type: 'integer',
    default: 600,
    min: 1,
    doc: 'Token requests per authenticated client per window (counted after authentication, so failures by others never use it up).',
  },
  {
    path: 'rateLimit.authFailuresPerClientIp',
    type: 'integer',
    default: 30,
    min: 1,
    doc: 'Failed client authentications per client id and address per window; past it, further failures get 429 (a correct credential still gets its token).',
  },
  { path: 'rateLimit.perIp', type: 'integer', default: 6000, min: 1, doc: 'Token requests per client address per window.' },
  { path: 'rateLimit.windowSeconds', type: 'integer', default: 60, min: 1, doc: 'Rate-limit window.' },

  // Metrics
  {
    path: 'metrics.tenantLabels',
    type: 'boolean',
    default: false,
    doc: 'Label metrics with tenant ids (aegis_tokens_issued_total{tenant}); off, GET /metrics names no tenant.',
  },
  {
    path: 'metrics.token',
    type: 'string',
    doc: 'Bearer token GET /metrics requires (control plane and gateway); unset = open, for a scraper on a private network.',
    secret: true,
  },

  // Audit
  { path: 'audit.checkpointIntervalMs', type: 'integer', default: 1000, min: 10, doc: 'How often each writer signs its chain head.' },

  // Decision log
  {
    path: 'decisionLog.enabled',
    type: 'boolean',
    default: true,
    doc: "Gateway: upload every decision (and refusal) to the control plane's decision log (GET /admin/v1/decisions).",
  },
  {
    path: 'decisionLog.url',
    type: 'url',
    doc:
      'Gateway: where decision batches go (POST <url>/admin/v1/decisions, with the gateway token), e.g. control planes kept for ingest; default ' +
      'controlPlaneUrl.',
  },
  {
    path: 'decisionLog.bufferSize',
    type: 'integer',
    default: 10000,
    min: 1,
    doc: 'Gateway: decisions held while waiting for an upload; past it they are dropped and counted (aegis_decision_log_dropped_total).',
  },
  {
    path: 'decisionLog.batchSize',
    type: 'integer',
    default: 500,
    min: 1,
    max: 1000,
    doc: 'Gateway: decisions per upload (gzip JSON; the control plane takes at most 1000).',
  },
  {
    path: 'decisionLog.flushIntervalMs',
    type: 'integer',
    default: 1000,
    min: 10,
    doc: 'Gateway: longest time a decision waits before its batch is uploaded (a full batch goes at once).',
  },
  { path: 'decisionLog.retentionHours', type: 'integer', default: 168, min: 1, doc: 'Control plane: decisions older than this are deleted.' },
  {
    path: 'decisionLog.pruneIntervalSeconds',
    type: 'integer',
    default: 60,
    min: 1,
    doc: 'Control plane: how often expired decisions are deleted (one control plane at a time).',
  },

  // Gateway
  {
    path: 'gateway.routes',
    type: 'json',
    default: [] as RouteConfig[],
    env: 'AEGIS_ROUTES',
    doc: 'Reverse-proxy / MCP routes: [{"path","upstream","mode":"proxy"|"mcp","tool"}].',
  },
  { path: 'gateway.shadow', type: 'boolean', default: false, doc: 'Compute and audit decisions but enforce none (enforced: false).' },
  { path: 'gateway.minPolicyVersion', type: 'string', doc: 'Tokens minted under an older policy_version are refused.' },
  {
    path: 'gateway.mcpStateSecret',
    type: 'string',
    doc: 'Key for sealing the requestState of MCP 2026-07-28 approval answers, the same on every gateway; unset = random per process.',
    secret: true,
  },
  {
    path: 'gateway.verifiedCacheSize',
    type: 'integer',
    default: 100000,
    min: 0,
    doc: 'Verified-token cache entries (each holds its token, or past 1,024 characters its SHA-256; valid until exp): at most about 1 KiB an entry.',
  },
  {
    path: 'gateway.feedStaleSeconds',
    type: 'integer',
    default: 30,
    min: 1,
    doc: 'Feed disconnected longer than this (deny list stale): high-risk actions answer 503 and /readyz is not ready.',
  },
  {
    path: 'gateway.redisOutageReads',
    type: 'enum',
    values: ['closed', 'open'],
    default: 'closed',
    doc: 'Redis down and the deny list stale: read actions answer 503 (closed, default) or go through (open); writes and high-risk always 503.',
  },
  { path: 'gateway.jwksCooldownSeconds', type: 'integer', default: 30, min: 1, doc: 'At most one JWKS refetch for an unknown kid per this period.' },
  { path: 'gateway.id', type: 'string', doc: 'Name this gateway reports with its acknowledged revocation sequence; default instanceId.' },
  {
    path: 'gateway.extAuthz.toolHeader',
    type: 'boolean',
    default: false,
    doc:
      'ext-authz: a request whose path names no tool (/v1/ext-authz, /v1/ext-authz/-/…) takes it from Aegis-Tool. Only behind a proxy that sets ' +
      'that header itself and strips the client\'s copy (README "Gateway").',
  },
  {
    path: 'gateway.extAuthz.resourceHeader',
    type: 'boolean',
    default: false,
    doc:
      "ext-authz: believe Aegis-Resource as the decision's resource (the proxy must set it and strip the client's copy); off = resource null, " +
      'and a request carrying the header is refused (400).',
  },

  // Approvals
  { path: 'approvals.ttlSeconds', type: 'integer', default: 900, min: 10, doc: 'Approval requests expire after this.' },
  { path: 'approvals.maxOpenPerAgent', type: 'integer', default: 20, min: 1, doc: 'Open approval requests one agent may have.' },
  { path: 'approvals.maxOpenPerTenant', type: 'integer', default: 500, min: 1, doc: 'Open approval requests one tenant may have.' },
  {
    path: 'approvals.notifiers',
    type: 'json',
    default: {} as Record<string, NotifierConfig[]>,
    doc: 'Per approver group: {"group": [{"type":"slack"|"teams"|"webhook","url","secret"?}]}.',
  },
  { path: 'approvals.slackSigningSecret', type: 'string', doc: 'Slack app signing secret for interactivity callbacks.', secret: true },
  { path: 'approvals.webhookSecret', type: 'string', doc: 'HMAC secret for the generic webhook notifier and its callback.', secret: true },
  {
    path: 'approvals.budgets',
    type: 'json',
    default: [] as unknown[],
    doc:
      'Automatic-approval budgets: [{"name","tenant","tool","group","auto_approve_below":{"param":"/params/amount","max":1000},"per_day":5}] ' +
      '(README "Approvals").',
  },

  // Console
  { path: 'console.sessionTtlSeconds', type: 'integer', default: 28800, min: 60, doc: 'Console session lifetime.' },
] as const satisfies readonly KeySpec[]

/** Env var name for a key. */
export function envName(spec: KeySpec): string {
  return (
    spec.env ??
    'AEGIS_' +
      spec.path
        .replace(/\./g, '_')
        .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
        .toUpperCase()
  )
}

/** A proxy or MCP route of the gateway. */
export interface RouteConfig {
  path: string
  upstream: string
  mode: 'proxy' | 'mcp'
  tool?: string
  /**
   * Proxy routes: the decision's resource, with `{path}` standing for the
   * decoded path below the route's prefix. Default: the route's path.
   */
  resource?: string
  /** Proxy routes: forward bodies unread (the policy sees `context.http.body == "opaque"` and `body_sha256`) instead of refusing non-JSON ones with 415. */
  opaque_body?: boolean
  /**
   * MCP routes: JSON-RPC methods passed through (`notifications/*` style prefixes allowed);
   * default: the tools, resources, prompts, completion and logging methods (gateway/modes/mcp DEFAULT_ALLOW_METHODS).
   */
  allow_methods?: string[]
  /** MCP routes: `scopes_supported` of the route's protected-resource metadata (RFC 9728). */
  scopes?: string[]
  /**
   * MCP routes: `Origin` values accepted (exact, `scheme://host[:port]`), DNS-rebinding protection
   * (MCP transports, security). Unset: an `Origin` is accepted only when it names the gateway itself.
   */
  allowed_origins?: string[]
  /**
   * MCP routes: hostnames (port ignored; IPv6 in brackets) accepted in `Host`. Unset: localhost,
   * 127.0.0.1 and [::1] when the gateway listens on loopback, else any.
   */
  allowed_hosts?: string[]
}

export type NotifierConfig = { type: 'slack'; url: string } | { type: 'teams'; url: string } | { type: 'webhook'; url: string; secret: string }

/** One key of the table. */
type Spec = (typeof CONFIG_KEYS)[number]

/** The loaded value of a key: JSON keys have the type their default is declared with (the loader checks their shape). */
type ValueOf<S> = S extends { type: 'json'; default: infer D }
  ? D
  : S extends { type: 'integer' }
    ? number
    : S extends { type: 'boolean' }
      ? boolean
      : S extends { type: 'enum'; values: readonly (infer V)[] }
        ? V
        : string

/** Keys every loaded config has: those with a default, and those loadConfig derives. */
type Present = { default: unknown } | { derived: true }

/** First segment of each dotted path (`gateway` of `gateway.port`). */
type Heads<S> = S extends { path: `${infer H}.${string}` } ? H : never

/** The specs below `H`, their paths made relative to it. */
type Below<S, H extends string> = S extends { path: `${H}.${infer T}` } ? Omit<S, 'path'> & { path: T } : never

/** Names at this level that every loaded config has: nested objects, keys with a default or derived. */
type PresentNames<S> = Heads<S> | (S extends Present & { path: infer P extends string } ? (P extends `${string}.${string}` ? never : P) : never)

/** Leaf names at this level that may be absent. */
type OptionalNames<S> = S extends { path: infer P extends string } ? (P extends `${string}.${string}` ? never : S extends Present ? never : P) : never

type Flat<T> = { [K in keyof T]: T[K] } & {}

/** The object a set of specs loads into: leaves here, one nested object per first path segment. */
type ConfigNode<S extends { path: string }> = Flat<
  { [K in PresentNames<S>]: K extends Heads<S> ? ConfigNode<Below<S, K>> : ValueOf<Extract<S, { path: K }>> } & {
    [K in OptionalNames<S>]?: ValueOf<Extract<S, { path: K }>>
  }
>

/**
 * The loaded, validated, frozen configuration: derived from
 * {@link CONFIG_KEYS}, nested by path, a key without default (and not
 * derived) optional.
 */
export type AegisConfig = ConfigNode<Spec>
