import type { Counter, Metric, MetricObjectWithValues, MetricValueWithName, Registry } from 'prom-client'

/**
 * A Prometheus histogram without labels whose `observe` is two additions and
 * an array increment, exposed through a prom-client registry like prom-client's
 * own (same text, same `sum` aggregation across gateway workers).
 *
 * Hand-written because prom-client's Histogram hashes its (empty) label set and
 * writes buckets keyed by float strings on every observe: about 2 % of a
 * gateway decision's CPU on the `/v1/authorize` hot path (issue 20).
 */
export class LeanHistogram {
  readonly type = 'histogram' as const
  readonly aggregator = 'sum' as const
  private readonly bounds: Float64Array
  /** Observations per bucket, not cumulative; the last one is +Inf. */
  private readonly counts: Float64Array
  private sum = 0
  private count = 0

  constructor(
    readonly name: string,
    readonly help: string,
    buckets: readonly number[],
    registry: Registry,
  ) {
    const sorted = [...buckets].sort((a, b) => a - b)
    if (sorted.some((b, i) => !Number.isFinite(b) || (i > 0 && b === sorted[i - 1]))) throw new TypeError(`${name}: buckets must be distinct finite numbers`)
    this.bounds = Float64Array.from(sorted)
    this.counts = new Float64Array(sorted.length + 1)
    // registerMetric is typed for prom-client's own classes; the registry only calls get(), reset() and reads name/type/aggregator.
    registry.registerMetric(this as unknown as Metric)
  }

  /** Records one observation; a value that is not a finite number is ignored (prom-client would throw on the hot path). */
  observe(value: number): void {
    if (!Number.isFinite(value)) return
    const bounds = this.bounds
    let i = 0
    while (i < bounds.length && value > bounds[i]!) i++
    this.counts[i]! += 1
    this.sum += value
    this.count += 1
  }

  /** The metric as prom-client's Histogram#get gives it: cumulative `le` buckets, +Inf, sum, count. */
  async get(): Promise<MetricObjectWithValues<MetricValueWithName<string>>> {
    const values: Array<MetricValueWithName<string>> = []
    let cumulative = 0
    for (let i = 0; i < this.bounds.length; i++) {
      cumulative += this.counts[i]!
      values.push({ labels: { le: this.bounds[i]! }, value: cumulative, metricName: `${this.name}_bucket` })
    }
    values.push({ labels: { le: '+Inf' }, value: this.count, metricName: `${this.name}_bucket` })
    values.push({ labels: {}, value: this.sum, metricName: `${this.name}_sum` })
    values.push({ labels: {}, value: this.count, metricName: `${this.name}_count` })
    // prom-client's typings give `type` as a numeric enum; at run time (and in its exposition) it is the string.
    const type = this.type as unknown as MetricObjectWithValues<MetricValueWithName<string>>['type']
    return { name: this.name, help: this.help, type, aggregator: this.aggregator, values, collect: () => undefined }
  }

  reset(): void {
    this.counts.fill(0)
    this.sum = 0
    this.count = 0
  }
}

/**
 * One label set of a prom-client Counter, counted in a plain number on a hot
 * path (`n += 1`) and added to the counter when the registry reads it: the
 * counter's `collect` calls {@link flushPending}. prom-client's `inc` hashes the
 * label set on every call.
 */
export class PendingCount {
  n = 0
  constructor(readonly child: Counter.Internal) {}
}

/** Adds every pending count to its counter (from the counter's `collect`, so a scrape always sees them). */
export function flushPending(pending: Iterable<PendingCount>): void {
  for (const p of pending) {
    if (p.n === 0) continue
    const n = p.n
    p.n = 0
    p.child.inc(n)
  }
}
