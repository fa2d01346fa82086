// The ceiling for intake throughput: the service's own fastify version, one POST route that does nothing.
import Fastify from 'fastify';

const app = Fastify({ logger: false });
app.post('/v1/tasks', async (_request, reply) => reply.code(202).send({}));
const address = await app.listen({ host: '127.0.0.1', port: 0 });
process.stdout.write(`${JSON.stringify({ address })}\n`);
process.on('SIGTERM', () => app.close().then(() => process.exit(0)));
