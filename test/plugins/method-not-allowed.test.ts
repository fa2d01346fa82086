import type { FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { ADMIN, testApp } from '../helpers.js';

const apps: FastifyInstance[] = [];
afterEach(async () => {
  for (const app of apps.splice(0)) await app.close();
});

describe('a wrong method on a known path', () => {
  it('answers 405 with the methods the path allows in allow, for every path of the document', async () => {
    const { app } = await testApp();
    apps.push(app);
    await app.ready();
    const document = app.swagger() as { paths: Record<string, Record<string, unknown>> };
    for (const [route, operations] of Object.entries(document.paths)) {
      const url = route.replace(/\{\w+\}/g, '12');
      const documented = Object.keys(operations).map((m) => m.toUpperCase());
      const expected = [...new Set([...documented, ...(documented.includes('GET') ? ['HEAD'] : [])])].sort();
      for (const method of ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'].filter((m) => !documented.includes(m))) {
        const response = await app.inject({ method: method as 'GET', url: `${url}?x=1`, headers: ADMIN });
        expect({ route, method, status: response.statusCode, allow: response.headers.allow }).toEqual({ route, method, status: 405, allow: expected.join(', ') });
        expect(response.json()).toMatchObject({ error: 'TASKD_ERR_METHOD_NOT_ALLOWED' });
      }
    }
  });

  it('still answers 404 for a path nobody serves, and for a parameter that makes a path unknown', async () => {
    const { app } = await testApp();
    apps.push(app);
    for (const url of ['/v2/tasks', '/v1/tasks/1/log/more', '/v1']) {
      const response = await app.inject({ method: 'PUT', url });
      expect(response.statusCode, url).toBe(404);
      expect(response.headers.allow).toBeUndefined();
    }
  });
});
