import { Ajv2020 } from 'ajv/dist/2020.js';
import type { FastifyInstance } from 'fastify';

type Document = {
  paths: Record<string, Record<string, { responses?: Record<string, { content?: Record<string, { schema?: unknown }> }> }>>;
  components?: unknown;
};

/** Responses seen in tests that the OpenAPI document does not allow; route tests assert this stays empty. */
export const contractViolations: string[] = [];

/**
 * Checks every response an app sends against the OpenAPI document the same app generates:
 * each status must be documented for its route, with the media type it is served as, and JSON
 * bodies must match their schema.
 */
export function checkResponsesAgainstDocument(app: FastifyInstance): void {
  let ajv: Ajv2020 | null = null;
  let document: Document | null = null;
  const validators = new Map<string, ReturnType<Ajv2020['compile']> | null>();
  app.addHook('onSend', async (request, reply, payload) => {
    const route = request.routeOptions.url;
    if (!route) return payload;
    if (!document) {
      document = app.swagger() as unknown as Document;
      ajv = new Ajv2020({ strict: false, allErrors: true });
      ajv.addSchema({ $id: 'openapi', components: document.components });
    }
    const path = route.replace(/:(\w+)/g, '{$1}');
    const method = request.method.toLowerCase();
    const status = String(reply.statusCode);
    const key = `${method} ${path} ${status}`;
    const responses = document.paths[path]?.[method]?.responses;
    if (!responses) return payload;
    if (!(status in responses)) {
      contractViolations.push(`${key}: status not documented`);
      return payload;
    }
    // The media type served must be one the document declares for this status (generated clients
    // parse by it: a text answer declared as JSON makes them throw).
    const served = String(reply.getHeader('content-type') ?? '').split(';')[0]!.trim();
    const declared = Object.keys(responses[status]?.content ?? {});
    if (served !== '' && !declared.includes(served)) contractViolations.push(`${key}: served as ${served}, declared as ${declared.join(', ') || 'nothing'}`);
    if (!validators.has(key)) {
      const schema = responses[status]?.content?.['application/json']?.schema;
      validators.set(key, schema ? ajv!.compile(JSON.parse(JSON.stringify(schema).replaceAll('"#/components/', '"openapi#/components/'))) : null);
    }
    const validate = validators.get(key);
    if (validate && typeof payload === 'string') {
      if (!validate(JSON.parse(payload))) contractViolations.push(`${key}: ${ajv!.errorsText(validate.errors)} in ${payload.slice(0, 200)}`);
    }
    return payload;
  });
}
