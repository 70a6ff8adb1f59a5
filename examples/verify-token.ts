// A tool server's check of an Aegis token with aegis/verify, right after start:
//   AEGIS_TOKEN=$(aegis token mint --tenant demo --agent demo-agent) npx tsx examples/verify-token.ts
import { createVerifier } from 'aegis/verify'

const verifier = createVerifier({ issuer: process.env.AEGIS_ISSUER ?? 'http://127.0.0.1:7400', audience: 'aegis-gateway' })
const { claims } = await verifier.verify(process.env.AEGIS_TOKEN!) // waits for the first key load (at most keyWaitMs, 10 s)
console.log(claims.sub, claims.tenant, claims.scope)
const again = verifier.verifySync(process.env.AEGIS_TOKEN!) // hot path once keys are held: no promise, cached until exp
console.log('cached:', again.claims === claims)
verifier.close()
