import fs from 'node:fs/promises';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import createClient from 'openapi-fetch';
import openapiTS, { astToString } from 'openapi-typescript';
import { afterEach, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { openApiYaml } from '../src/plugins/openapi.js';
import { ADMIN_TOKEN, repoRoot, testApp, waitFor } from './helpers.js';
import type { paths } from './generated/openapi.js';

const apps: FastifyInstance[] = [];
afterEach(async () => {
  for (const app of apps.splice(0)) await app.close();
});

async function readyApp(env: Record<string, string> = {}) {
  const { app } = await testApp({ TASKD_COMMAND: JSON.stringify(['sh', '-c', 'echo done', 'x', '{nid}']), ...env });
  apps.push(app);
  await app.ready();
  return app;
}

const committed = () => fs.readFile(path.join(repoRoot, 'openapi.yaml'), 'utf8');

/** Every route the app registered, as "METHOD /path" with {param} placeholders (HEAD routes fastify adds are left out). */
function registeredRoutes(app: FastifyInstance): string[] {
  const out: string[] = [];
  const prefixes: string[] = [];
  for (const line of app.printRoutes({ commonPrefix: false }).split('\n')) {
    const match = /^([│ ]*)[├└]── (\/\S*|\*) \(([^)]+)\)/.exec(line);
    if (!match) continue;
    // Each level of the tree is four characters of indentation; a child's path continues its parent's.
    const depth = match[1]!.length / 4;
    prefixes.length = depth;
    const full = (prefixes[depth - 1] ?? '') + (match[2] === '*' ? '/*' : match[2]!);
    prefixes[depth] = full;
    for (const method of match[3]!.split(', ')) if (method !== 'HEAD') out.push(`${method} ${full.replace(/:(\w+)/g, '{$1}')}`);
  }
  return out.sort();
}

describe('openapi.yaml', () => {
  it('is what the routes generate (run npm run openapi after changing a route)', async () => {
    const app = await readyApp();
    expect(await committed()).toBe(openApiYaml(app));
  });

  it('documents every route the app registers, and nothing else', async () => {
    const app = await readyApp();
    const document = parse(await committed()) as { paths: Record<string, Record<string, unknown>> };
    const documented = Object.entries(document.paths)
      .flatMap(([p, methods]) => Object.keys(methods).map((m) => `${m.toUpperCase()} ${p}`))
      .sort();
    // Pages for a browser, not API: the dashboard and Swagger UI's own files.
    const pages = ['GET /docs/*', 'GET /ui', 'GET /ui/assets/{file}', 'POST /ui', 'POST /ui/logout'];
    expect(documented).toEqual(registeredRoutes(app).filter((route) => !pages.includes(route)));
    expect(registeredRoutes(app)).toEqual(expect.arrayContaining(pages));
  });

  it('names both security schemes and every error code', async () => {
    const document = parse(await committed());
    expect(Object.keys(document.components.securitySchemes).sort()).toEqual(['bearerToken', 'webhookSignature']);
    expect(document.components.schemas.Error.properties.error.enum).toContain('TASKD_ERR_SIGNATURE_STALE');
    expect(document.paths['/v1/tasks'].post.security).toEqual([{ webhookSignature: [] }, { bearerToken: [] }]);
  });

  it('is served at /openapi.yaml, and rendered at /docs', async () => {
    const app = await readyApp();
    const served = await app.inject({ url: '/openapi.yaml' });
    expect(served.headers['content-type']).toMatch(/^application\/yaml/);
    expect(served.body).toBe(await committed());
    const docs = await app.inject({ url: '/docs' });
    expect(docs.headers['content-type']).toMatch(/^text\/html/);
    // Swagger UI, its files from this service (relative to docs/, so a proxy's path keeps working), none from elsewhere.
    expect(docs.body).toContain('<base href="docs/">');
    const sources = [...docs.body.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]!);
    expect(sources).toEqual(expect.arrayContaining(['./static/swagger-ui-bundle.js', './static/swagger-initializer.js']));
    expect(sources.filter((s) => /^(https?:)?\/\//.test(s))).toEqual([]);
    for (const file of sources.filter((s) => s.startsWith('./static/'))) {
      const asset = await app.inject({ url: `/docs/${file.slice(2)}` });
      expect(asset.statusCode, file).toBe(200);
    }
    const bundle = await app.inject({ url: '/docs/static/swagger-ui-bundle.js' });
    expect(bundle.headers['content-type']).toMatch(/javascript/);
    expect(bundle.body.length).toBeGreaterThan(100_000);
    // The document it renders is this one, with "try it out" aimed at the service the page came from.
    const spec = (await app.inject({ url: '/docs/json' })).json() as { paths: Record<string, unknown>; servers: Array<{ url: string }> };
    expect(Object.keys(spec.paths)).toEqual(Object.keys((parse(await committed()) as { paths: Record<string, unknown> }).paths));
    expect(spec.servers).toEqual([{ url: '..', description: 'This service' }]);
    expect((await app.inject({ url: '/docs/' })).body).not.toContain('<base');
  });

  it('says what each answer means instead of "Default Response", and lists the error codes of an error status', async () => {
    const yaml = await committed();
    expect(yaml).not.toContain('Default Response');
    const document = parse(yaml) as { paths: Record<string, Record<string, { responses: Record<string, { description: string }> }>> };
    expect(document.paths['/v1/tasks/{nid}']!.delete!.responses['409']!.description).toContain('TASKD_ERR_TASK_RUNNING');
    expect(document.paths['/v1/queue/pause']!.post!.responses['200']!.description).toBe('OK');
  });

  it('matches the committed generated client types (run npm run openapi)', async () => {
    const generated = astToString(await openapiTS(new URL('../openapi.yaml', import.meta.url)));
    const onDisk = await fs.readFile(path.join(repoRoot, 'test', 'generated', 'openapi.ts'), 'utf8');
    expect(onDisk).toContain(generated.trim().split('\n').slice(0, 40).join('\n'));
    expect(onDisk.replace(/^\/\*\*[\s\S]*?\*\/\n\n/, '').trim()).toBe(generated.trim());
  });
});

describe('a client generated from the document (openapi-fetch)', () => {
  it('queues a task, reads it back, and reads the queue against the running service', async () => {
    const app = await readyApp({ TASKD_ADMIN_TOKEN: ADMIN_TOKEN });
    const baseUrl = await app.listen({ host: '127.0.0.1', port: 0 });
    const client = createClient<paths>({ baseUrl, headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    const created = await client.POST('/v1/tasks', { body: { nid: 314, rid: 15, type: 'verify' } });
    expect(created.response.status).toBe(202);
    expect(created.data?.nid).toBe(314);
    await waitFor(async () => (await client.GET('/v1/tasks/{nid}', { params: { path: { nid: 314 } } })).data?.state === 'succeeded');
    const task = await client.GET('/v1/tasks/{nid}', { params: { path: { nid: 314 }, query: { tail: 100 } } });
    expect(task.data).toMatchObject({ nid: 314, lane: 'rid:15', exitCode: 0 });
    expect(task.data?.output).toContain('done');
    const queue = await client.GET('/v1/queue');
    expect(queue.data).toMatchObject({ paused: false, depth: 0 });
    // Loopback may read the queue without the token, but not change it.
    const anonymous = createClient<paths>({ baseUrl });
    expect((await anonymous.GET('/v1/queue')).data).toMatchObject({ paused: false });
    const refused = await anonymous.POST('/v1/queue/pause');
    expect(refused.error).toMatchObject({ error: 'TASKD_ERR_UNAUTHORIZED' });
  });
});
