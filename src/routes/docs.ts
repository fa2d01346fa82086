import type { FastifyPluginAsync } from 'fastify';
import { openApiYaml } from '../plugins/openapi.js';
import { textResponse } from '../schemas.js';

interface Operation {
  summary?: string;
  description?: string;
  tags?: string[];
  parameters?: Array<{ name: string; in: string; required?: boolean; description?: string; schema?: { type?: string } }>;
  responses?: Record<string, { description?: string }>;
}

const escape = (text: string) => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** A self-contained API reference (no scripts, no CDN): hostmaster servers often have no way out. */
export function renderReference(document: { info: { title: string; version: string; description?: string }; paths?: Record<string, Record<string, Operation>> }): string {
  const sections = Object.entries(document.paths ?? {}).flatMap(([path, methods]) =>
    Object.entries(methods).map(([method, op]) => {
      const params = (op.parameters ?? [])
        .map((p) => `<li><code>${escape(p.name)}</code> (${escape(p.in)}${p.required ? ', required' : ''}) ${escape(p.description ?? '')}</li>`)
        .join('');
      const responses = Object.entries(op.responses ?? {})
        .map(([status, r]) => `<li><code>${escape(status)}</code> ${escape(r.description ?? '')}</li>`)
        .join('');
      return `<section><h2><code>${method.toUpperCase()} ${escape(path)}</code></h2><p>${escape(op.summary ?? '')}</p>${op.description ? `<p>${escape(op.description)}</p>` : ''}${params ? `<h3>Parameters</h3><ul>${params}</ul>` : ''}<h3>Responses</h3><ul>${responses}</ul></section>`;
    }),
  );
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escape(document.info.title)} API</title>
<style>body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}code{background:#f4f4f4;padding:0 .2rem}section{border-top:1px solid #ddd;margin-top:1.5rem}</style></head>
<body><h1>${escape(document.info.title)} ${escape(document.info.version)}</h1><p>The machine-readable contract is <a href="openapi.yaml">openapi.yaml</a>.</p><pre>${escape(document.info.description ?? '')}</pre>${sections.join('\n')}</body></html>`;
}

export const docsRoutes: FastifyPluginAsync = async (app) => {
  app.get('/openapi.yaml', { schema: { operationId: 'getOpenApiDocument', summary: 'This OpenAPI document', tags: ['health'], security: [], response: { 200: textResponse('application/yaml', 'This document, as YAML.') } } }, async (_request, reply) => {
    reply.type('application/yaml; charset=utf-8');
    return openApiYaml(app);
  });
  app.get('/docs', { schema: { operationId: 'getApiReference', summary: 'API reference (HTML)', tags: ['health'], security: [], response: { 200: textResponse('text/html', 'A self-contained HTML page.') } } }, async (_request, reply) => {
    reply.type('text/html; charset=utf-8');
    return renderReference(app.swagger() as Parameters<typeof renderReference>[0]);
  });
};
