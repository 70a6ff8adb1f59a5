import { test } from 'node:test'
import assert from 'node:assert/strict'
import { connect, type Socket } from 'node:net'
import { basic, seedAgent, startControlPlane } from './harness.js'

async function open(url: string): Promise<Socket> {
  const u = new URL(url)
  const s = connect(Number(u.port), u.hostname)
  await new Promise<void>((resolve, reject) => {
    s.once('connect', resolve)
    s.once('error', reject)
  })
  return s
}

/** Resolves 'closed' when `p` settles, or 'still waiting' after `ms` (the connection below never goes away by itself). */
async function settles(p: Promise<unknown>, ms: number): Promise<string> {
  let timer: NodeJS.Timeout | undefined
  const r = await Promise.race([
    p.then(() => 'closed'),
    new Promise<string>((resolve) => {
      timer = setTimeout(() => resolve('still waiting'), ms)
    }),
  ])
  clearTimeout(timer)
  return r
}

test('close does not wait on a client connection that never sent a request, and still answers a request already received', async () => {
  const h = await startControlPlane()
  const { clientId, secret } = await seedAgent(h)
  // A pooled connection that never carries a request (as undici keeps one after a gateway closes).
  const idle = await open(h.url)
  const idleClosed = new Promise<void>((resolve) => idle.once('close', () => resolve()))
  idle.on('error', () => {})
  // A token request whose headers arrived but whose body has not: received, so it must be answered.
  const busy = await open(h.url)
  const body = 'grant_type=client_credentials'
  busy.write(
    `POST /oauth2/token HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: ${basic(clientId, secret)}\r\ncontent-type: ` +
      `application/x-www-form-urlencoded\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n`,
  )
  let answer = ''
  busy.on('data', (d: Buffer) => {
    answer += d.toString()
  })
  const busyClosed = new Promise<void>((resolve) => busy.once('close', () => resolve()))
  await new Promise((r) => setTimeout(r, 100))

  const closing = h.close()
  busy.write(body)
  const r = await settles(closing, 3_000)
  if (r !== 'closed') idle.destroy()
  assert.equal(r, 'closed', 'close waited on a connection that never sent a request')
  await idleClosed
  await busyClosed
  assert.match(answer, /^HTTP\/1\.1 200 /)
  assert.match(answer, /"access_token"/)
})
