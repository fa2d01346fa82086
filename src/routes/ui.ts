import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { TaskdError } from '../errors.js';
import { tokenMatches } from '../plugins/auth.js';
import { csrfToken, sameOrigin, sessionCookie, setCookieHeader } from '../ui-session.js';

/** The page's own files only: scripts and styles from this service, nothing inline, nothing from elsewhere. */
export const UI_CONTENT_SECURITY_POLICY =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";
const ASSET_TYPES: Record<string, string> = { '.js': 'text/javascript', '.css': 'text/css', '.html': 'text/html', '.svg': 'image/svg+xml', '.png': 'image/png' };
const SESSION_SECONDS = 12 * 3600;
/** src/ui both from src/routes (tests) and from dist/routes (the built service). */
const ASSET_DIR = new URL('../../src/ui/', import.meta.url);

/**
 * The files are read on the first request for the dashboard and kept: a service whose dashboard is
 * never opened holds none of them.
 */
interface Asset {
  body: Buffer;
  etag: string;
}
let assets: Promise<Map<string, Asset>> | null = null;
function loadAssets(): Promise<Map<string, Asset>> {
  assets ??= (async () => {
    const names = (await readdir(ASSET_DIR)).filter((name) => Object.keys(ASSET_TYPES).some((ext) => name.endsWith(ext)));
    const read = async (name: string) => {
      const body = await readFile(new URL(name, ASSET_DIR));
      return [name, { body, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"` }] as const;
    };
    return new Map(await Promise.all(names.map(read)));
  })();
  assets.catch(() => (assets = null));
  return assets;
}

/** Whether the dashboard's files have been read (they are, on the first request for it). */
export const uiAssetsLoaded = (): boolean => assets !== null;

const escape = (text: string) => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

async function page(reply: FastifyReply, status: number, name: string, values: Record<string, string>) {
  const template = (await loadAssets()).get(name);
  if (!template) throw new TaskdError('INTERNAL', `The dashboard file ${name} is missing.`);
  const html = template.body.toString('utf8').replace(/\{\{(\w+)\}\}/g, (_, key: string) => escape(values[key] ?? ''));
  return reply.code(status).type('text/html; charset=utf-8').header('cache-control', 'no-store').header('content-security-policy', UI_CONTENT_SECURITY_POLICY).send(html);
}

/** GET /ui (the dashboard, or the login form), POST /ui (log in), POST /ui/logout, GET /ui/assets/*. */
export const uiRoutes: FastifyPluginAsync = async (app) => {
  const { config } = app.taskd;
  const admin = () => config.adminToken?.reveal();
  const signedIn = (request: FastifyRequest) => {
    const token = admin();
    const presented = sessionCookie(request);
    return token !== undefined && presented !== undefined && tokenMatches(token, presented);
  };
  const login = (reply: FastifyReply, status: number, error: TaskdError | null) =>
    page(reply, status, 'login.html', { error: error ? `${error.code}: ${error.message}` : '', hidden: error ? '' : 'hidden' });

  // A login form posts application/x-www-form-urlencoded; only these routes read it.
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: 4096 }, (_request, body, done) => {
    done(null, Object.fromEntries(new URLSearchParams(body as string)));
  });

  app.get('/ui', { schema: { hide: true } }, async (request, reply) => {
    if (!signedIn(request)) return login(reply, 401, null);
    return page(reply, 200, 'index.html', { csrf: csrfToken(admin()!) });
  });

  // No rate limit of its own: the bearer header is tried as freely, and one here would let any hosted
  // site on loopback (one client to the limit) keep the operators from signing in.
  app.post('/ui', { schema: { hide: true } }, async (request, reply) => {
    // Login CSRF: a form on another site must not sign a browser in with a token of its choosing.
    if (!sameOrigin(request)) return login(reply, 403, new TaskdError('CROSS_SITE_REQUEST'));
    const token = admin();
    const presented = (request.body as Record<string, unknown> | undefined)?.token;
    if (token === undefined || typeof presented !== 'string' || !tokenMatches(token, presented.trim())) return login(reply, 401, new TaskdError('UNAUTHORIZED'));
    return reply.code(303).header('set-cookie', setCookieHeader(request, presented.trim(), SESSION_SECONDS)).header('location', 'ui').send();
  });

  app.post('/ui/logout', { schema: { hide: true } }, async (request, reply) => {
    if (!sameOrigin(request)) throw new TaskdError('CROSS_SITE_REQUEST');
    return reply.code(303).header('set-cookie', setCookieHeader(request, '', 0)).header('location', '../ui').send();
  });

  app.get<{ Params: { file: string } }>('/ui/assets/:file', { schema: { hide: true } }, async (request, reply) => {
    const { file } = request.params;
    const asset = file.endsWith('.html') ? undefined : (await loadAssets()).get(file);
    if (!asset) throw new TaskdError('ROUTE_NOT_FOUND');
    const type = ASSET_TYPES[file.slice(file.lastIndexOf('.'))]!;
    // Revalidated on every load, so an upgrade of the service is seen at once, and sent again only when it changed.
    reply.header('cache-control', 'no-cache').header('etag', asset.etag).header('content-security-policy', UI_CONTENT_SECURITY_POLICY);
    if (request.headers['if-none-match'] === asset.etag) return reply.code(304).send();
    return reply.type(type.startsWith('text/') ? `${type}; charset=utf-8` : type).send(asset.body);
  });
};
