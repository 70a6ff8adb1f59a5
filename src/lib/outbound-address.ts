/**
 * Which addresses the control plane may fetch from on a tenant's behalf (a
 * trusted issuer's `jwks_uri`): public unicast addresses over https, never
 * loopback, private, link-local, CGNAT, multicast or otherwise special ones,
 * unless the operator lists the range (`tokenExchange.jwksAllowedNetworks`),
 * in which case plain http is accepted there too. Every address a name
 * resolves to must pass, and the connection goes to the address checked (no
 * second resolution), so DNS rebinding gains nothing.
 */
import { lookup } from 'node:dns/promises'
import { BlockList, isIP } from 'node:net'

/** Special-purpose ranges (RFC 6890 and successors) an outbound fetch never reaches unless allowed. */
const SPECIAL_V4: ReadonlyArray<[string, number]> = [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.0.2.0', 24],
  ['192.88.99.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['198.51.100.0', 24],
  ['203.0.113.0', 24],
  ['224.0.0.0', 4],
  ['240.0.0.0', 4],
]
const SPECIAL_V6: ReadonlyArray<[string, number]> = [
  // IPv4-mapped addresses (::ffff:0:0/96) are not listed: BlockList checks them as the IPv4 address they carry.
  ['::', 128],
  ['::1', 128],
  ['64:ff9b:1::', 48],
  ['100::', 64],
  ['2001::', 23],
  ['2001:db8::', 32],
  ['2002::', 16],
  ['fc00::', 7],
  ['fe80::', 10],
  ['fec0::', 10],
  ['ff00::', 8],
]

const special = new BlockList()
for (const [a, p] of SPECIAL_V4) special.addSubnet(a, p, 'ipv4')
for (const [a, p] of SPECIAL_V6) special.addSubnet(a, p, 'ipv6')

/** Why an outbound URL was refused (for logs; clients get one flat message). */
export class OutboundRefused extends Error {
  /** `url`: scheme, credentials or syntax; `address`: where it resolves; `unresolved`: the name does not resolve now. */
  constructor(
    message: string,
    readonly kind: 'url' | 'address' | 'unresolved' = 'address',
  ) {
    super(message)
    this.name = 'OutboundRefused'
  }
}

/**
 * Parses CIDR strings (`10.0.0.0/8`, `::1/128`, a bare address = one host)
 * into a BlockList. Returns the problems instead of throwing, for the config
 * loader.
 */
export function parseNetworks(list: readonly unknown[]): { networks: BlockList; problems: string[] } {
  const networks = new BlockList()
  const problems: string[] = []
  for (const raw of list) {
    if (typeof raw !== 'string') {
      problems.push(`${JSON.stringify(raw)} is not a string`)
      continue
    }
    const [addr, bits, extra] = raw.split('/')
    const family = isIP(addr ?? '')
    const max = family === 4 ? 32 : 128
    const prefix = bits === undefined ? max : Number(bits)
    if (family === 0 || extra !== undefined || !Number.isInteger(prefix) || prefix < 0 || prefix > max || (bits !== undefined && !/^\d+$/.test(bits))) {
      problems.push(`"${raw}" is not an address or CIDR range`)
      continue
    }
    networks.addSubnet(addr!, prefix, family === 4 ? 'ipv4' : 'ipv6')
  }
  return { networks, problems }
}

/** The policy one control plane applies to outbound fetches. */
export interface OutboundPolicy {
  /** Ranges the operator allows besides public addresses (http is accepted there). */
  allowed: BlockList
}

const nat64 = new BlockList()
nat64.addSubnet('64:ff9b::', 96, 'ipv6')

/** The 16-bit groups of an IPv6 address (`::` expanded, a trailing dotted quad as two groups). */
function v6Groups(v6: string): number[] {
  const part = (x: string): number[] => {
    if (x === '') return []
    const out: number[] = []
    for (const g of x.split(':')) {
      if (g.includes('.')) {
        const [a = 0, b = 0, c = 0, d = 0] = g.split('.').map(Number)
        out.push((a << 8) | b, (c << 8) | d)
      } else {
        out.push(Number.parseInt(g, 16))
      }
    }
    return out
  }
  const [head = '', tail] = v6.split('::')
  if (tail === undefined) return part(head)
  const h = part(head)
  const t = part(tail)
  return [...h, ...Array<number>(8 - h.length - t.length).fill(0), ...t]
}

/** The IPv4 address in the low 32 bits of an IPv6 address (NAT64, RFC 6052). */
function embeddedV4(v6: string): string {
  const g = v6Groups(v6)
  const hi = g[6] ?? 0
  const lo = g[7] ?? 0
  return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`
}

/** True when `address` is in an allowed range; false when public; throws OutboundRefused when special and not allowed. */
export function checkAddress(address: string, policy: OutboundPolicy): boolean {
  const family = isIP(address)
  if (family === 0) throw new OutboundRefused(`${address} is not an IP address`)
  const type = family === 4 ? 'ipv4' : 'ipv6'
  if (policy.allowed.check(address, type)) return true
  // DNS64 synthesizes public IPv4 hosts into 64:ff9b::/96: judge the IPv4 address it carries.
  if (type === 'ipv6' && nat64.check(address, 'ipv6')) return checkAddress(embeddedV4(address), policy)
  if (special.check(address, type)) throw new OutboundRefused(`${address} is a loopback, private, link-local or otherwise special address`)
  return false
}

/** Where a checked URL may be fetched from: the URL and the address to connect to. */
export interface CheckedTarget {
  url: URL
  /** The address checked; connect here (not to a fresh resolution of the name). */
  address: string
  family: 4 | 6
}

/** Checks the parts of a URL that need no network: https (or http, decided later), no credentials, a host. */
export function checkUrlShape(raw: string): URL {
  let url: URL
  try {
    url = new URL(raw)
  } catch {
    throw new OutboundRefused('not an absolute URL', 'url')
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new OutboundRefused('not an https URL', 'url')
  if (url.username !== '' || url.password !== '') throw new OutboundRefused('credentials in the URL', 'url')
  if (url.hostname === '') throw new OutboundRefused('no host', 'url')
  return url
}

/**
 * Resolves the URL's host and checks every address it resolves to: all must
 * be public (then the URL must be https) or in an allowed range (then http
 * is accepted too). Throws OutboundRefused otherwise, or when the name does
 * not resolve.
 */
export async function resolveTarget(
  raw: string,
  policy: OutboundPolicy,
  resolve: (host: string) => Promise<Array<{ address: string; family: number }>> = (h) => lookup(h, { all: true, verbatim: true }),
): Promise<CheckedTarget> {
  const url = checkUrlShape(raw)
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname
  let addresses: Array<{ address: string; family: number }>
  if (isIP(host) !== 0) addresses = [{ address: host, family: isIP(host) }]
  else {
    try {
      addresses = await resolve(host)
    } catch (err) {
      throw new OutboundRefused(`${host} does not resolve (${(err as { code?: string }).code ?? 'error'})`, 'unresolved')
    }
  }
  if (addresses.length === 0) throw new OutboundRefused(`${host} does not resolve`, 'unresolved')
  let allAllowed = true
  for (const a of addresses) if (!checkAddress(a.address, policy)) allAllowed = false
  if (url.protocol === 'http:' && !allAllowed) throw new OutboundRefused('not an https URL (plain http only to tokenExchange.jwksAllowedNetworks)', 'url')
  const first = addresses[0]!
  return { url, address: first.address, family: first.family === 6 ? 6 : 4 }
}
