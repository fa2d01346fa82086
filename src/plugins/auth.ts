import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import type { Config } from '../config.js';
import { TaskdError } from '../errors.js';
import { checkCookieChange, sessionCookie } from '../ui-session.js';

export function isLoopback(ip: string | undefined): boolean {
  if (!ip) return false;
  return ip === '::1' || ip.startsWith('127.') || ip.startsWith('::ffff:127.');
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}

/** Constant-time, and independent of the length of the token tried. */
export function tokenMatches(expected: string, presented: string): boolean {
  return timingSafeEqual(digest(expected), digest(presented));
}

export function bearerToken(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  if (typeof header !== 'string') return undefined;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return match?.[1] ?? '';
}

const SAFE_METHODS = new Set(['GET', 'HEAD']);

/**
 * The bearer header, or else the dashboard's cookie (an EventSource cannot send a header). A
 * change made with the cookie must also pass the cross-site check.
 */
function presentedTokenMatches(config: Pick<Config, 'adminToken'>, request: FastifyRequest): boolean | undefined {
  const bearer = bearerToken(request);
  const presented = bearer ?? sessionCookie(request);
  if (presented === undefined) return undefined;
  if (config.adminToken === undefined || !tokenMatches(config.adminToken.reveal(), presented)) return false;
  if (bearer === undefined && !SAFE_METHODS.has(request.method)) checkCookieChange(request, config.adminToken.reveal());
  return true;
}

/**
 * Every change (cancel, stop, pause, resume, reconcile) and every read of task output needs the admin
 * token, from loopback too: on a hostmaster, loopback is shared with the PHP of every hosted site.
 * A service always has a token (server.ts makes one when none is configured); an app built without
 * one refuses these requests to everyone.
 */
export function requireAdminToken(config: Pick<Config, 'adminToken'>, request: FastifyRequest): void {
  if (presentedTokenMatches(config, request) !== true) throw new TaskdError('UNAUTHORIZED');
}

/**
 * Reads of the queue and of task states (no output): open to loopback clients, so a monitoring
 * check on the host needs no secret; from elsewhere they need the token. A wrong token is refused
 * wherever it comes from, so a typo is seen at once.
 */
export function authorizeRead(config: Pick<Config, 'adminToken'>, request: FastifyRequest): void {
  const matches = presentedTokenMatches(config, request);
  if (matches === true) return;
  if (matches === false) throw new TaskdError('UNAUTHORIZED');
  if (isLoopback(request.socket.remoteAddress)) return;
  throw new TaskdError(config.adminToken === undefined ? 'FORBIDDEN' : 'UNAUTHORIZED');
}
