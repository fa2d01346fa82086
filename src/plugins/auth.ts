import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import type { Config } from '../config.js';
import { TaskdError } from '../errors.js';

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

/**
 * Operator access: the bearer token when one is configured; without one, loopback clients only,
 * so a fresh install is never open to the network.
 */
export function authorizeOperator(config: Pick<Config, 'adminToken'>, request: FastifyRequest): void {
  const presented = bearerToken(request);
  if (config.adminToken !== undefined) {
    if (presented === undefined || !tokenMatches(config.adminToken.reveal(), presented)) throw new TaskdError('UNAUTHORIZED');
    return;
  }
  if (!isLoopback(request.socket.remoteAddress)) throw new TaskdError('FORBIDDEN');
}
