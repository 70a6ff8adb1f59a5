// The HTTP baseline for the /v1/authorize benchmarks: a fastify server that
// parses the same JSON body and answers the same 200 body without deciding
// anything. Prints its port; exits on SIGTERM.
import Fastify from 'fastify'

const app = Fastify()
app.post('/v1/authorize', (request, reply) => {
  reply.header('cache-control', 'no-store').send({
    decision: 'allow',
    reasons: ['capability:granted'],
    policy_version: 'none',
    obligations: [],
    params: request.body.action.params ?? {},
    enforced: true,
  })
})
await app.listen({ port: 0, host: '127.0.0.1' })
process.stdout.write(`${app.server.address().port}\n`)
process.once('SIGTERM', () => {
  void app.close().then(() => process.exit(0))
})
