import { context, propagation, trace, SpanStatusCode, type Attributes, type Context, type Span, type Tracer } from '@opentelemetry/api'
import { W3CTraceContextPropagator } from '@opentelemetry/core'
import { createRequire } from 'node:module'
import type { NodeTracerProvider, SpanProcessor } from '@opentelemetry/sdk-trace-node'

const require = createRequire(import.meta.url)

/**
 * The SDK and the OTLP exporter are about 250 module files, a fifth of a
 * gateway's start-up (issue 14): loaded, synchronously, only by a process
 * that records spans.
 */
function sdk(): {
  trace: typeof import('@opentelemetry/sdk-trace-node')
  otlp: typeof import('@opentelemetry/exporter-trace-otlp-http')
  resources: typeof import('@opentelemetry/resources')
} {
  return {
    trace: require('@opentelemetry/sdk-trace-node') as typeof import('@opentelemetry/sdk-trace-node'),
    otlp: require('@opentelemetry/exporter-trace-otlp-http') as typeof import('@opentelemetry/exporter-trace-otlp-http'),
    resources: require('@opentelemetry/resources') as typeof import('@opentelemetry/resources'),
  }
}

let provider: NodeTracerProvider | undefined

/**
 * Installs the global tracer provider once per process. Spans are exported over
 * OTLP/HTTP only when `OTEL_EXPORTER_OTLP_ENDPOINT` (or the traces-specific
 * variable) is set, honouring the standard OTel variables; otherwise the API's
 * no-op tracer stays in place and spans cost next to nothing. Tests pass their
 * own processor (an InMemorySpanExporter behind a SimpleSpanProcessor).
 */
export function initTracing(options: { serviceName?: string; processors?: SpanProcessor[]; env?: Record<string, string | undefined> } = {}): void {
  if (provider) return
  const env = options.env ?? process.env
  const processors = [...(options.processors ?? [])]
  const exporting = Boolean(env.OTEL_EXPORTER_OTLP_ENDPOINT || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)
  propagation.setGlobalPropagator(new W3CTraceContextPropagator())
  if (processors.length === 0 && !exporting) return
  const { trace: sdkTrace, otlp, resources } = sdk()
  if (exporting) processors.push(new sdkTrace.BatchSpanProcessor(new otlp.OTLPTraceExporter()))
  provider = new sdkTrace.NodeTracerProvider({
    resource: resources.resourceFromAttributes({ 'service.name': env.OTEL_SERVICE_NAME ?? options.serviceName ?? 'aegis' }),
    spanProcessors: processors,
  })
  provider.register()
}

/** Flushes and removes the provider (process exit, tests). */
export async function shutdownTracing(): Promise<void> {
  const p = provider
  provider = undefined
  if (p) await p.shutdown()
  trace.disable()
  context.disable()
  propagation.disable()
}

/** Whether spans are recorded in this process (a provider is installed); without one every span is a no-op. */
export function tracingActive(): boolean {
  return provider !== undefined
}

export function tracer(): Tracer {
  return trace.getTracer('aegis')
}

/** The W3C trace context carried by incoming request headers. */
export function extractContext(headers: Record<string, string | string[] | undefined>): Context {
  return propagation.extract(context.active(), headers)
}

/** Writes the active span's `traceparent`/`tracestate` into outgoing headers. */
export function injectContext(ctx: Context, headers: Record<string, string>): void {
  propagation.inject(ctx, headers)
}

/**
 * Starts a span as a child of `parent` and returns it; the caller ends it.
 * Attributes must never carry a token or a sanitized parameter value.
 */
export function startSpan(name: string, parent: Context, attributes?: Attributes): Span {
  return tracer().startSpan(name, { attributes }, parent)
}

export function endSpanWithError(span: Span, err: unknown): void {
  span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) })
  span.end()
}
