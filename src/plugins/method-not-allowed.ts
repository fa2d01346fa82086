import type { FastifyInstance } from 'fastify';

interface KnownPath {
  pattern: RegExp;
  methods: Set<string>;
}

/**
 * Remembers the methods of every route as it is registered, so a request for a known path with a
 * method it does not have can be answered 405 with `allow` (RFC 9110, 15.5.6) instead of 404.
 * Call before the routes are registered; the returned function answers the methods a path allows.
 */
export function trackRouteMethods(app: FastifyInstance): (url: string) => string[] | null {
  const known = new Map<string, KnownPath>();
  app.addHook('onRoute', (route) => {
    const url = route.url ?? route.path;
    if (typeof url !== 'string' || url.includes('*')) return;
    // Parameters match one path segment, as in fastify's router.
    const pattern = new RegExp(`^${url.split('/').map((part) => (part.startsWith(':') ? '[^/]+' : part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))).join('/')}$`);
    const entry = known.get(url) ?? { pattern, methods: new Set<string>() };
    for (const method of [route.method].flat()) entry.methods.add(method);
    // fastify answers HEAD for every GET route on its own.
    if (entry.methods.has('GET')) entry.methods.add('HEAD');
    known.set(url, entry);
  });
  return (url) => {
    const path = url.split('?')[0]!;
    const allowed = new Set<string>();
    for (const { pattern, methods } of known.values()) if (pattern.test(path)) for (const m of methods) allowed.add(m);
    return allowed.size > 0 ? [...allowed].sort() : null;
  };
}
