/**
 * client_secret_basic and client_secret_post (RFC 6749 §2.3.1) with
 * bootstrap credentials: the store holds only base64url(SHA-256(secret)) of a
 * 256-bit random secret, so one fast hash and a constant-time compare decide.
 */
import { timingSafeEqual } from 'node:crypto'
import { sha256, sha256b64url } from '../../../lib/hash.js'
import type { ControlPlaneDeps } from '../../deps.js'
import type { Directory } from '../directory.js'
import { ClientAuthFailure } from './failure.js'
import type { AuthPurpose, AuthenticatedClient, ClientAuthenticator, ClientClaim } from './types.js'

const SECRET_METHODS: ReadonlySet<string> = new Set(['client_secret_basic', 'client_secret_post'])

// Compared against when the client id is unknown, so both paths hash and compare.
const DUMMY_HASH = sha256b64url('aegis-unknown-client')

/**
 * Constant-time check of a presented secret against the stored
 * base64url(SHA-256). Both sides are 32-byte digests, so comparing them
 * directly leaks neither content nor length (lib/hash's constantTimeEqual
 * would hash both again, which this hot path does not need).
 */
function secretMatches(secret: string, storedHash: string): boolean {
  const presented = sha256(secret)
  const stored = Buffer.from(storedHash, 'base64url')
  return stored.length === presented.length && timingSafeEqual(presented, stored)
}

export function clientSecretAuthenticator(deps: ControlPlaneDeps, dir: Directory): ClientAuthenticator {
  return {
    methods: ['client_secret_basic', 'client_secret_post'],
    async authenticate(claim: ClientClaim, purpose: AuthPurpose): Promise<AuthenticatedClient> {
      const secret = claim.secret
      if (secret === undefined) throw new ClientAuthFailure('malformed')
      const cred = await dir.credential(claim.clientId)
      const match = secretMatches(secret, cred?.secretHash ?? DUMMY_HASH)
      if (!cred) throw new ClientAuthFailure('unknown_client')
      if (!match) throw new ClientAuthFailure('bad_secret', cred.tenant)
      const now = deps.clock.now()
      if (purpose === 'token') {
        if (cred.expiresAt <= now) throw new ClientAuthFailure('expired', cred.tenant)
        if (cred.singleUse && cred.usedAt !== null) throw new ClientAuthFailure('used', cred.tenant)
      } else if (cred.expiresAt + deps.config.tokens.maxTtlSeconds * 1000 <= now) {
        // No token obtained with it can still be alive.
        throw new ClientAuthFailure('expired', cred.tenant)
      }
      const tenant = dir.peekTenant(cred.tenant)?.value ?? (await dir.tenant(cred.tenant))
      if (!tenant) throw new ClientAuthFailure('tenant_missing', cred.tenant)
      const agent = dir.peekAgent(cred.tenant, cred.agentId)?.value ?? (await dir.agent(cred.tenant, cred.agentId))
      if (!agent) throw new ClientAuthFailure('agent_missing', cred.tenant)
      if (purpose === 'token' && tenant.requireAttestation) throw new ClientAuthFailure('attestation_required', cred.tenant)
      // An agent registered for a key or certificate must not be reachable through a weaker secret.
      if (purpose === 'token' && !SECRET_METHODS.has(agent.tokenEndpointAuthMethod)) throw new ClientAuthFailure('method_not_allowed', cred.tenant)
      return {
        method: claim.method,
        clientId: cred.clientId,
        tenant,
        agent,
        credential: cred,
        commit: cred.singleUse
          ? async () => {
              if (!(await deps.store.credentials.consume(cred.clientId, deps.clock.now()))) throw new ClientAuthFailure('used', cred.tenant)
            }
          : noCommit,
      }
    },
  }
}

async function noCommit(): Promise<void> {}
