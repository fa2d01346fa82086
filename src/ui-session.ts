import { createHmac, timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { TaskdError } from './errors.js';

/** The dashboard's cookie: it holds the admin token, so it is HttpOnly, SameSite=Strict, and Secure behind TLS. */
export const SESSION_COOKIE = 'taskd_admin';
/** The header every change made with the cookie must carry, with the token the dashboard page was given. */
export const CSRF_HEADER = 'x-taskd-csrf';

export function sessionCookie(request: FastifyRequest): string | undefined {
  const header = request.headers.cookie;
  if (typeof header !== 'string') return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === SESSION_COOKIE) {
      try {
        return decodeURIComponent(part.slice(eq + 1).trim());
      } catch {
        return '';
      }
    }
  }
  return undefined;
}

/**
 * The path the browser sees the service under: a reverse proxy that serves it below a path of the
 * hostmaster's vhost says which in X-Forwarded-Prefix, so the cookie goes to this service only and
 * not to the Drupal site beside it.
 */
export function publicPrefix(request: FastifyRequest): string {
  const prefix = request.headers['x-forwarded-prefix'];
  return typeof prefix === 'string' && /^(\/[A-Za-z0-9._~-]+)+$/.test(prefix) ? prefix : '';
}

export function setCookieHeader(request: FastifyRequest, value: string, maxAgeSeconds: number): string {
  const secure = request.headers['x-forwarded-proto'] === 'https' || request.protocol === 'https';
  return `${SESSION_COOKIE}=${encodeURIComponent(value)}; Path=${publicPrefix(request)}/; HttpOnly; SameSite=Strict; Max-Age=${maxAgeSeconds}${secure ? '; Secure' : ''}`;
}

/** A token only whoever knows the admin token can make; the dashboard page carries it for its own requests. */
export function csrfToken(adminToken: string): string {
  return createHmac('sha256', adminToken).update('aegir-taskd dashboard csrf').digest('base64url');
}

/** The host the browser addressed: a proxy's X-Forwarded-Host, or Host. */
function requestHost(request: FastifyRequest): string | undefined {
  const forwarded = request.headers['x-forwarded-host'];
  const host = typeof forwarded === 'string' && forwarded !== '' ? forwarded.split(',')[0]!.trim() : request.headers.host;
  return host?.toLowerCase();
}

/** A browser sends Origin with every POST and DELETE: one that names another site is a cross-site request. */
export function sameOrigin(request: FastifyRequest): boolean {
  const origin = request.headers.origin;
  if (typeof origin !== 'string' || origin === 'null') return false;
  try {
    return new URL(origin).host.toLowerCase() === requestHost(request);
  } catch {
    return false;
  }
}

/**
 * A change authenticated by the cookie, not by a bearer header: the browser attached the
 * credential, so the request must show it comes from the dashboard itself. SameSite=Strict already
 * keeps the cookie off cross-site requests; this holds where it does not (an old browser, a
 * sibling subdomain, which counts as the same site).
 */
export function checkCookieChange(request: FastifyRequest, adminToken: string): void {
  const presented = request.headers[CSRF_HEADER];
  const expected = Buffer.from(csrfToken(adminToken));
  const tokenOk = typeof presented === 'string' && presented.length === expected.length && timingSafeEqual(Buffer.from(presented), expected);
  if (!sameOrigin(request) || !tokenOk) throw new TaskdError('CROSS_SITE_REQUEST');
}
