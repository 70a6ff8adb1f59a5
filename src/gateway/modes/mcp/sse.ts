import { PassThrough, type Readable } from 'node:stream'
import { StringDecoder } from 'node:string_decoder'
import { createParser, type EventSourceMessage } from 'eventsource-parser'
import { isPlainObject } from '../common.js'

/**
 * Rewrites one JSON-RPC response carried by a stream; returns the message to
 * send instead (the same object when unchanged).
 */
export type ResponseRewrite = (message: Record<string, unknown>) => Record<string, unknown>

/**
 * Receives, when a rewritten stream starts, a function sending one event of
 * the gateway's own (a JSON-RPC notification, `data` only) on it, and the
 * stream, which emits `close` when the client is gone.
 */
export type SseInjector = (send: (data: string) => void, stream: Readable) => void

/** True for a JSON-RPC response (id plus result or error, no method). */
export function isResponse(m: unknown): m is Record<string, unknown> {
  return isPlainObject(m) && m.method === undefined && 'id' in m && ('result' in m || 'error' in m)
}

function serialize(ev: EventSourceMessage, data: string): string {
  let out = ''
  if (ev.id !== undefined) out += `id: ${ev.id}\n`
  if (ev.event !== undefined) out += `event: ${ev.event}\n`
  for (const line of data.split('\n')) out += `data: ${line}\n`
  return `${out}\n`
}

/**
 * Streams `source` (an upstream `text/event-stream`) event by event,
 * rewriting the JSON-RPC responses it carries with `rewrite` and passing
 * every other event (notifications, server requests, priming events) as it
 * came, so progress notifications still arrive while a tool runs. Comments
 * are dropped. An event larger than `maxEventBytes` ends the stream (the
 * gateway never buffers without bound). Backpressure is kept: the upstream
 * is paused while the client is slow, and destroyed when the client leaves.
 */
export function rewriteSse(source: Readable, rewrite: ResponseRewrite, maxEventBytes: number, onOpen?: SseInjector): Readable {
  const out = new PassThrough()
  const write = (s: string): void => {
    if (!out.write(s)) {
      source.pause()
      out.once('drain', () => source.resume())
    }
  }
  // Whole events only, written between the upstream's events (the parser hands each one over whole): never inside one.
  onOpen?.((data) => {
    if (!out.destroyed && !out.writableEnded) write(serialize({ data } as EventSourceMessage, data))
  }, out)
  const parser = createParser({
    maxBufferSize: maxEventBytes,
    onEvent(ev) {
      let data = ev.data
      if (data.length > 0) {
        let msg: unknown
        try {
          msg = JSON.parse(data)
        } catch {
          msg = undefined
        }
        if (isResponse(msg)) {
          let r: Record<string, unknown>
          try {
            r = rewrite(msg)
          } catch {
            // Fail closed: a response the gateway could not check is not passed on.
            r = { jsonrpc: '2.0', id: msg.id, error: { code: -32603, message: 'the Aegis gateway could not check this response' } }
          }
          if (r !== msg) data = JSON.stringify(r)
        }
      }
      write(serialize(ev, data))
    },
    onRetry(ms) {
      write(`retry: ${ms}\n\n`)
    },
    onError(err) {
      if (err.type === 'max-buffer-size-exceeded') {
        source.destroy()
        out.destroy(new Error('upstream SSE event too large'))
      }
    },
  })
  // A decoder, not setEncoding: undici's body stream hands out Buffers whatever it is told, and a chunk may split a UTF-8 sequence.
  const decoder = new StringDecoder('utf8')
  source.on('data', (chunk: Buffer | string) => {
    try {
      parser.feed(typeof chunk === 'string' ? chunk : decoder.write(chunk))
    } catch (err) {
      source.destroy()
      out.destroy(err as Error)
    }
  })
  source.on('end', () => {
    try {
      parser.feed(decoder.end())
      parser.reset({ consume: true })
    } catch {
      // the stream is over either way
    }
    out.end()
  })
  source.on('error', (err) => out.destroy(err))
  out.on('close', () => {
    if (!source.destroyed) source.destroy()
  })
  return out
}
