import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

/** Ids as proxies and tracing tools make them (UUIDs, hex, base64url, dotted or colon-separated). */
const ACCEPTED = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;

/**
 * The id of a request: the client's `x-request-id` when it is a plain token, so a proxy's id still
 * ties its lines to ours, and a fresh UUID otherwise. It is echoed in a header and written in every
 * log line of the request, so what a client sends must never reach either as it was sent.
 */
export function requestIdFor(request: IncomingMessage): string {
  const offered = request.headers['x-request-id'];
  return typeof offered === 'string' && ACCEPTED.test(offered) ? offered : randomUUID();
}
