import { test } from 'node:test'
import assert from 'node:assert/strict'
import { checkAddress, parseNetworks, resolveTarget, OutboundRefused } from '../../../src/lib/outbound-address.js'
import { loadConfig } from '../../../src/config/load.js'

const none = { allowed: parseNetworks([]).networks }

test('special addresses are refused, public ones pass, allowed ranges pass', () => {
  for (const a of [
    '127.0.0.1',
    '10.0.0.1',
    '172.31.255.255',
    '192.168.1.1',
    '169.254.169.254',
    '100.100.0.1',
    '0.0.0.0',
    '224.0.0.1',
    '255.255.255.255',
    '::1',
    '::',
    'fe80::1',
    'fd12::1',
    '::ffff:127.0.0.1',
    '::ffff:a00:1',
    '2001:db8::1',
    'ff02::1',
  ]) {
    assert.throws(() => checkAddress(a, none), OutboundRefused, a)
  }
  for (const a of ['93.184.215.14', '1.1.1.1', '2606:4700:4700::1111', '64:ff9b::5db8:d70e', '64:ff9b::93.184.215.14'])
    assert.equal(checkAddress(a, none), false, a)
  // NAT64 (DNS64) addresses are judged by the IPv4 address they carry.
  for (const a of ['64:ff9b::7f00:1', '64:ff9b::10.0.0.1', '64:ff9b::a9fe:a9fe']) assert.throws(() => checkAddress(a, none), OutboundRefused, a)
  const allowed = { allowed: parseNetworks(['127.0.0.0/8', '10.1.0.0/16', '::1']).networks }
  assert.equal(checkAddress('127.0.0.1', allowed), true)
  assert.equal(checkAddress('10.1.2.3', allowed), true)
  assert.equal(checkAddress('::1', allowed), true)
  assert.throws(() => checkAddress('10.2.0.1', allowed), OutboundRefused)
})

test('a URL must be https to a public host, or may be http into an allowed range; every resolved address is checked', async () => {
  const resolveTo = (addrs: string[]) => async () => addrs.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }))
  await assert.rejects(resolveTarget('https://rebind.example/keys', none, resolveTo(['93.184.215.14', '127.0.0.1'])), /special/)
  await assert.rejects(resolveTarget('http://public.example/keys', none, resolveTo(['93.184.215.14'])), /https/)
  assert.equal((await resolveTarget('https://public.example/keys', none, resolveTo(['93.184.215.14']))).address, '93.184.215.14')
  const loop = { allowed: parseNetworks(['127.0.0.0/8']).networks }
  assert.equal((await resolveTarget('http://127.0.0.1:9/keys', loop)).address, '127.0.0.1')
  await assert.rejects(
    resolveTarget('https://nowhere.invalid/keys', none, async () => {
      throw Object.assign(new Error('x'), { code: 'ENOTFOUND' })
    }),
    /does not resolve/,
  )
})

test('tokenExchange.jwksAllowedNetworks takes CIDR ranges and names a bad one at configuration time', () => {
  assert.deepEqual(
    loadConfig({ env: { AEGIS_TOKEN_EXCHANGE_JWKS_ALLOWED_NETWORKS: '["10.0.0.0/8","::1/128","192.168.1.5"]' } }).tokenExchange.jwksAllowedNetworks,
    ['10.0.0.0/8', '::1/128', '192.168.1.5'],
  )
  assert.throws(
    () => loadConfig({ env: { AEGIS_TOKEN_EXCHANGE_JWKS_ALLOWED_NETWORKS: '["10.0.0.0/33","intranet"]' } }),
    (e: Error & { problems?: string[] }) => {
      assert.match(e.problems!.join('\n'), /tokenExchange.jwksAllowedNetworks: "10.0.0.0\/33" is not an address or CIDR range/)
      assert.match(e.problems!.join('\n'), /"intranet" is not/)
      return true
    },
  )
})
