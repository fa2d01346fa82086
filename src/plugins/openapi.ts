import fastifySwagger from '@fastify/swagger';
import type { FastifyInstance } from 'fastify';
import { jsonSchemaTransform, jsonSchemaTransformObject } from 'fastify-type-provider-zod';
import { stringify } from 'yaml';
import { errorCatalog } from '../errors.js';

const errorTable = Object.entries(errorCatalog)
  .map(([name, { status, message }]) => `| \`TASKD_ERR_${name}\` | ${status} | ${message} |`)
  .join('\n');

const description = `Runs queued Aegir tasks the moment they are queued.

The hosting_taskd Drupal module posts a signed webhook (Standard Webhooks v1) to \`POST /v1/tasks\`
when a task is queued; operators use the bearer token, which every change and every read of a task's
output needs, from loopback too. Reading the queue and the task list is open to loopback clients.

Every error is JSON \`{"error": CODE, "message": …}\` with one of these stable codes:

| Code | HTTP status | Default message |
| --- | --- | --- |
${errorTable}
`;

/** The OpenAPI document is generated from the route schemas (zod), so it cannot drift from what the routes accept. */
export async function openApiPlugin(app: FastifyInstance, version: string): Promise<void> {
  await app.register(fastifySwagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: 'aegir-taskd', version, description, license: { name: 'GPL-2.0-or-later', identifier: 'GPL-2.0-or-later' } },
      servers: [{ url: 'http://127.0.0.1:8765', description: 'The default listen address' }],
      tags: [
        { name: 'intake', description: 'Tasks announced by Aegir or an operator' },
        { name: 'tasks', description: 'Tasks the service knows: queued, running, and the recently ended' },
        { name: 'queue', description: 'The queue as a whole' },
        { name: 'health', description: 'Liveness, readiness, metrics and this document' },
      ],
      components: {
        securitySchemes: {
          webhookSignature: {
            type: 'apiKey',
            in: 'header',
            name: 'webhook-signature',
            description:
              'Standard Webhooks v1: headers webhook-id, webhook-timestamp (unix seconds, ±300 s) and webhook-signature, a space-separated list of `v1,<base64 HMAC-SHA256>` over `<webhook-id>.<webhook-timestamp>.<raw body>`, keyed by the base64-decoded part of the `whsec_` secret. Any matching signature passes; a repeated webhook-id within 10 minutes is answered as a duplicate.',
          },
          bearerToken: { type: 'http', scheme: 'bearer', description: 'TASKD_ADMIN_TOKEN, or the token the service made in TASKD_STATE_DIR/admin-token when none is configured.' },
        },
      },
    },
    transform: jsonSchemaTransform,
    transformObject: (input) => describeResponses(pruneUnusedSchemas(jsonSchemaTransformObject(input) as OpenApiLike)) as ReturnType<typeof jsonSchemaTransformObject>,
  });
}

type OpenApiLike = { components?: { schemas?: Record<string, unknown> } } & Record<string, unknown>;

/** The type provider registers an input and an output variant of every named schema; only those referenced belong in the document. */
function pruneUnusedSchemas<T extends OpenApiLike>(document: T): T {
  const schemas = document.components?.schemas;
  if (!schemas) return document;
  const refsIn = (value: unknown) => [...JSON.stringify(value).matchAll(/"#\/components\/schemas\/([^"]+)"/g)].map((m) => m[1]!);
  const used = new Set<string>();
  const pending = refsIn({ ...document, components: { ...document.components, schemas: {} } });
  while (pending.length > 0) {
    const name = pending.pop()!;
    if (used.has(name)) continue;
    used.add(name);
    pending.push(...refsIn(schemas[name]));
  }
  document.components!.schemas = Object.fromEntries(Object.entries(schemas).filter(([name]) => used.has(name)));
  return document;
}

const SUCCESS: Record<string, string> = { '200': 'OK', '201': 'Created', '202': 'Accepted: it goes on after the answer', '204': 'No content' };

/**
 * fastify-swagger names every answer without a description "Default Response"; a reader wants to
 * know what a status means, so an error status lists the codes it can carry, from the catalogue.
 */
function describeResponses<T extends OpenApiLike>(document: T): T {
  const paths = (document as { paths?: Record<string, Record<string, { responses?: Record<string, { description?: string }> }>> }).paths ?? {};
  for (const methods of Object.values(paths)) {
    for (const operation of Object.values(methods)) {
      for (const [status, response] of Object.entries(operation.responses ?? {})) {
        if (response.description !== 'Default Response') continue;
        const codes = Object.entries(errorCatalog).filter(([, e]) => String(e.status) === status).map(([name]) => `TASKD_ERR_${name}`);
        response.description = SUCCESS[status] ?? (codes.length ? `Error: one of ${codes.join(', ')}` : `HTTP ${status}`);
      }
    }
  }
  return document;
}

/** YAML without folded lines, so descriptions (and the error table) stay readable. */
export function openApiYaml(app: FastifyInstance): string {
  return stringify(app.swagger(), { lineWidth: 0 });
}
