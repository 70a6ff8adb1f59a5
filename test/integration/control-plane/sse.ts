/** A tiny SSE follower for tests (fetch + eventsource-parser). */
import { createParser, type EventSourceMessage } from 'eventsource-parser'

export interface SseFollower {
  status: number
  /** Resolves with the next event matching `pred` (already received ones count). */
  next(pred: (e: EventSourceMessage) => boolean, timeoutMs?: number): Promise<EventSourceMessage>
  events: EventSourceMessage[]
  close(): void
}

export async function followSse(url: string, token: string): Promise<SseFollower> {
  const ac = new AbortController()
  const res = await fetch(url, { headers: { authorization: `Bearer ${token}`, accept: 'text/event-stream' }, signal: ac.signal })
  const events: EventSourceMessage[] = []
  const waiters: Array<{ pred: (e: EventSourceMessage) => boolean; resolve: (e: EventSourceMessage) => void }> = []
  const parser = createParser({
    onEvent(e) {
      events.push(e)
      for (const w of [...waiters]) {
        if (w.pred(e)) {
          waiters.splice(waiters.indexOf(w), 1)
          w.resolve(e)
        }
      }
    },
  })
  if (res.ok && res.body) {
    const reader = res.body.getReader()
    const decoder = new TextDecoder()
    void (async () => {
      try {
        for (;;) {
          const { done, value } = await reader.read()
          if (done) break
          parser.feed(decoder.decode(value, { stream: true }))
        }
      } catch {
        // aborted
      }
    })()
  } else {
    await res.text().catch(() => undefined)
  }
  return {
    status: res.status,
    events,
    next(pred, timeoutMs = 5000) {
      const seen = events.find(pred)
      if (seen) return Promise.resolve(seen)
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error('no matching SSE event in time')), timeoutMs)
        waiters.push({
          pred,
          resolve: (e) => {
            clearTimeout(t)
            resolve(e)
          },
        })
      })
    },
    close() {
      ac.abort()
    },
  }
}
