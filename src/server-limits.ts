import type { Server } from 'node:http';
import type { Config } from './config.js';

type Limits = Pick<Config, 'requestTimeoutMs' | 'headersTimeoutMs' | 'keepAliveTimeoutMs' | 'maxConnections'>;

/**
 * Fastify's defaults never time a request out (requestTimeout 0) and take any number of
 * connections, so clients that send a header and one byte of body a minute hold a descriptor each
 * for ever. Node enforces the header and request timeouts on a sweep, every 30 s by default:
 * swept four times a timeout (at most once a second) they hold within a quarter of it.
 * Long-lived answers are not cut by these: a request is complete once it has been read, and an
 * answer that streams for hours is bounded by long-lived-responses.ts instead.
 */
export function serverTimeouts(config: Limits) {
  const sweepMs = Math.max(25, Math.min(1000, Math.floor(Math.min(config.headersTimeoutMs, config.requestTimeoutMs) / 4)));
  return {
    requestTimeout: config.requestTimeoutMs,
    keepAliveTimeout: config.keepAliveTimeoutMs,
    http: { headersTimeout: config.headersTimeoutMs, connectionsCheckingInterval: sweepMs },
  };
}

/** Beyond the cap, Node closes a new connection as it is accepted, before any of its bytes are read. */
export function capConnections(server: Server, config: Limits): void {
  server.maxConnections = config.maxConnections;
}
