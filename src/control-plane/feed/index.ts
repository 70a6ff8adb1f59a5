/**
 * The control plane's feed publisher, chosen by configuration: Redis pub/sub
 * when `redisUrl` is set, else in-process fan-out to the SSE stream.
 */
import type { Logger } from 'pino'
import type { AegisConfig } from '../../config/schema.js'
import type { Revocation } from '../../store/types.js'
import { createSsePublisher, type FeedHub } from './publisher-sse.js'
import { RedisFeedPublisher } from './publisher-redis.js'

export type { FeedEvent, FeedPublisher, FeedSnapshot, AgentState, AgentTuple, PolicyState, RevocationTuple } from './events.js'
export { isFeedHub, LocalFeedHub, createSsePublisher, type FeedHub, type FeedListener } from './publisher-sse.js'
export { RedisFeedPublisher, feedKeys, feedLogKey, FEED_LOG_MAXLEN, type RedisFeedOptions } from './publisher-redis.js'
export { FeedLog, type FeedLogOptions, type LoggedEvent } from './log.js'

export interface OpenFeedOptions {
  /** Live revocations to mirror into Redis at start (ignored without Redis). */
  active?: Revocation[]
  now?: number
  /** Redis key prefix (tests). */
  redisPrefix?: string
}

/** Opens the configured feed. With Redis, rejects when Redis is unreachable. */
export async function openFeed(config: AegisConfig, logger: Logger, opts: OpenFeedOptions = {}): Promise<FeedHub> {
  if (!config.redisUrl) {
    return createSsePublisher((err) => logger.error({ err }, 'feed listener failed'))
  }
  const feed = await RedisFeedPublisher.open({ url: config.redisUrl, logger, prefix: opts.redisPrefix })
  if (opts.active) await feed.syncRevocations(opts.active, opts.now ?? Date.now())
  return feed
}
