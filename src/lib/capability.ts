import { canonicalHash } from './canonical-json.js'

/** The agent's capability manifest as docs/reference.md fixes it. */
export interface CapabilityManifest {
  capabilities: string[]
  schemas?: Record<string, unknown>
}

/** Builds the manifest: tool names sorted and deduplicated, schemas only when registered. */
export function buildManifest(capabilities: readonly string[], schemas?: Record<string, unknown> | null): CapabilityManifest {
  const sorted = [...new Set(capabilities)].sort()
  const manifest: CapabilityManifest = { capabilities: sorted }
  if (schemas && Object.keys(schemas).length > 0) manifest.schemas = schemas
  return manifest
}

/** `capability_hash` = base64url(SHA-256(RFC 8785 canonical JSON of the manifest)). */
export function capabilityHash(manifest: CapabilityManifest): string {
  return canonicalHash(manifest)
}
