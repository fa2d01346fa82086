import Fastify, { type FastifyInstance, type FastifyPluginAsync, type FastifyReply, type FastifyRequest } from 'fastify';
import { openApiYaml } from '../plugins/openapi.js';
import { textResponse } from '../schemas.js';

/**
 * Swagger UI runs its own scripts and sets inline styles; it talks to this service only. The token
 * for "Try it out" is typed into its Authorize dialog and kept in the page's memory, not stored.
 */
export const DOCS_CONTENT_SECURITY_POLICY =
  "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; form-action 'none'; base-uri 'self'; frame-ancestors 'none'";

/**
 * Swagger UI (from @fastify/swagger-ui, which ships its files) in an app of its own, built on the
 * first request for /docs: a service whose reference is never opened never loads it, so its idle
 * memory stays where it was. The document is this app's own, as generated from the routes.
 */
let reference: Promise<FastifyInstance> | null = null;
function referenceApp(document: unknown): Promise<FastifyInstance> {
  reference ??= (async () => {
    const [{ default: swagger }, { default: swaggerUi }] = await Promise.all([import('@fastify/swagger'), import('@fastify/swagger-ui')]);
    const inner = Fastify({ logger: false });
    await inner.register(swagger, { mode: 'static', specification: { document: document as never } });
    await inner.register(swaggerUi, {
      routePrefix: '/docs',
      uiConfig: { deepLinking: true, tryItOutEnabled: true, persistAuthorization: false, displayRequestDuration: true, defaultModelsExpandDepth: 0 },
      staticCSP: false,
      // Try it out calls this service where the page came from (any port, or a proxy's path), not the document's default address.
      transformSpecification: (spec) => ({ ...spec, servers: [{ url: '..', description: 'This service' }] }),
    });
    await inner.ready();
    return inner;
  })();
  reference.catch(() => (reference = null));
  return reference;
}

async function relay(app: FastifyInstance, request: FastifyRequest, reply: FastifyReply, url: string) {
  const inner = await referenceApp(app.swagger());
  const headers: Record<string, string> = {};
  for (const name of ['if-none-match', 'if-modified-since'] as const) {
    const value = request.headers[name];
    if (typeof value === 'string') headers[name] = value;
  }
  const answer = await inner.inject({ method: 'GET', url, headers });
  for (const name of ['content-type', 'etag', 'last-modified', 'cache-control', 'location']) {
    const value = answer.headers[name];
    if (value !== undefined) reply.header(name, value);
  }
  reply.code(answer.statusCode).header('content-security-policy', DOCS_CONTENT_SECURITY_POLICY);
  let body = answer.rawPayload;
  // /docs without a trailing slash: the page's relative addresses must resolve below docs/, also behind a proxy's path.
  if (url === '/docs/' && request.url.split('?')[0] === '/docs') body = Buffer.from(body.toString('utf8').replace('<head>', '<head>\n      <base href="docs/">'));
  return reply.send(body);
}

export const docsRoutes: FastifyPluginAsync = async (app) => {
  app.get('/openapi.yaml', { schema: { operationId: 'getOpenApiDocument', summary: 'This OpenAPI document', tags: ['health'], security: [], response: { 200: textResponse('application/yaml', 'This document, as YAML.') } } }, async (_request, reply) => {
    reply.type('application/yaml; charset=utf-8');
    return openApiYaml(app);
  });
  app.get(
    '/docs',
    {
      schema: {
        operationId: 'getApiReference',
        summary: 'API reference (Swagger UI, served by this service)',
        description: 'Try it out: Authorize with the admin token (kept in the page only, never stored), then Execute.',
        tags: ['health'],
        security: [],
        response: { 200: textResponse('text/html', "Swagger UI's page; its scripts and styles are under /docs/.") },
      },
    },
    async (request, reply) => relay(app, request, reply, '/docs/'),
  );
  app.get('/docs/*', { schema: { hide: true } }, async (request, reply) => relay(app, request, reply, request.url));
};
