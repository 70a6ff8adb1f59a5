import { Redis, type RedisOptions } from 'ioredis'

/**
 * Longest wait between two reconnect attempts to Redis (ms). A gateway must
 * be back on a fresh deny list within 2 s of Redis answering again (issue
 * 15): at most this long to notice, the rest for the resync.
 */
export const REDIS_RECONNECT_MAX_MS = 1_000

/**
 * ioredis reconnect delay: exponential from 50 ms with jitter in [d/2, d],
 * capped at {@link REDIS_RECONNECT_MAX_MS}, never giving up. The jitter keeps
 * a fleet of gateways from reconnecting in lockstep after a Redis restart.
 */
export function redisReconnectDelay(times: number): number {
  const d = Math.min(REDIS_RECONNECT_MAX_MS, 50 * 2 ** Math.min(times, 10))
  return d / 2 + Math.random() * (d / 2)
}

/**
 * The gateway's connection for commands (replay claims, HGETALL, PING):
 * without an offline queue and with `commandTimeoutMs`, so a command fails
 * at once while Redis is disconnected and after the timeout while it stalls,
 * and the caller fails closed instead of waiting.
 */
export function redisCommandConnection(url: string, commandTimeoutMs: number): Redis {
  return new Redis(url, { ...base(), enableOfflineQueue: false, maxRetriesPerRequest: 0, commandTimeout: commandTimeoutMs })
}

/** The gateway's connection for SUBSCRIBE only; ioredis resubscribes it after every reconnect. */
export function redisSubscriberConnection(url: string): Redis {
  return new Redis(url, { ...base(), maxRetriesPerRequest: null })
}

function base(): RedisOptions {
  return { retryStrategy: redisReconnectDelay, connectTimeout: 2_000, lazyConnect: false }
}
