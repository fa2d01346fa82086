import type { FastifyInstance } from 'fastify';

/**
 * Nothing the service answers is meant to run in a browser: no scripts, no frames, no plugins. A
 * task's log is whatever drush printed, so a browser that sniffed it as HTML would run a site's
 * output with the service's origin. The dashboard (/ui) and the API reference (/docs) set policies
 * of their own that allow their own scripts and nothing else.
 */
export const CONTENT_SECURITY_POLICY = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/** Adds nosniff and a content security policy to every answer, streamed ones included (onSend runs before the first byte). */
export function securityHeadersPlugin(app: FastifyInstance): void {
  // A callback hook, not an async one: it runs on every answer, the intake's hot path included.
  app.addHook('onSend', (_request, reply, payload, done) => {
    reply.header('x-content-type-options', 'nosniff');
    if (!reply.hasHeader('content-security-policy')) {
      reply.header('content-security-policy', CONTENT_SECURITY_POLICY);
    }
    done(null, payload);
  });
}
