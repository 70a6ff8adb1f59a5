// The issuance anchor of `npm run bench`: node-oidc-provider (the most used
// certified OAuth server for Node) answering client_credentials with EdDSA
// at+jwt access tokens (RFC 9068), as Aegis does, on the port given as argv[2].
// Its default in-memory adapter: a JWT access token is not stored.
import { generateKeyPairSync } from 'node:crypto'
import Provider from 'oidc-provider'

const port = Number(process.argv[2])
const clientSecret = process.argv[3]
const { privateKey } = generateKeyPairSync('ed25519')
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'bench', use: 'sig', alg: 'EdDSA' }
const issuer = `http://127.0.0.1:${port}`
const provider = new Provider(issuer, {
  clients: [
    {
      client_id: 'bench-client',
      client_secret: clientSecret,
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
      token_endpoint_auth_method: 'client_secret_basic',
      // Only EdDSA is enabled; the default (RS256) would be refused as client metadata.
      id_token_signed_response_alg: 'EdDSA',
      scope: 'payments:write crm:read',
    },
  ],
  jwks: { keys: [jwk] },
  enabledJWA: { idTokenSigningAlgValues: ['EdDSA'] },
  scopes: ['payments:write', 'crm:read'],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => 'urn:aegis:bench',
      getResourceServerInfo: () => ({
        scope: 'payments:write crm:read',
        audience: 'urn:aegis:bench',
        accessTokenTTL: 600,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'EdDSA' } },
      }),
      useGrantedResource: () => true,
    },
  },
})
// Like Aegis's bench run, nothing is logged per request.
provider.on('server_error', (_ctx, err) => process.stderr.write(`oidc-provider: ${err.message}\n`))
provider.listen(port, '127.0.0.1', () => process.stdout.write(`listening ${issuer}\n`))
