import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { hasZodFastifySchemaValidationErrors } from 'fastify-type-provider-zod';
import { TaskdError, toErrorBody } from '../errors.js';
import { JournalWriteError } from '../journal.js';
import { trackRouteMethods } from './method-not-allowed.js';

/** Fastify's own errors that reach clients, in our vocabulary. */
const FASTIFY_CODES: Record<string, () => TaskdError> = {
  FST_ERR_CTP_BODY_TOO_LARGE: () => new TaskdError('BODY_TOO_LARGE'),
  FST_ERR_CTP_INVALID_MEDIA_TYPE: () => new TaskdError('UNSUPPORTED_MEDIA_TYPE'),
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: () => new TaskdError('INVALID_REQUEST', 'The content-length header does not match the body.'),
  FST_ERR_CTP_EMPTY_JSON_BODY: () => new TaskdError('INVALID_JSON', 'The request body is empty.'),
  FST_ERR_CTP_INVALID_JSON_BODY: () => new TaskdError('INVALID_JSON'),
};

export function toTaskdError(error: unknown): TaskdError {
  if (error instanceof TaskdError) return error;
  if (error instanceof JournalWriteError) return new TaskdError('JOURNAL_UNAVAILABLE');
  const err = error as FastifyError;
  if (hasZodFastifySchemaValidationErrors(err)) {
    const issues = err.validation.map((v) => ({
      field: [err.validationContext, ...v.instancePath.split('/').filter(Boolean)].join('.'),
      message: v.message ?? 'invalid',
    }));
    const first = issues[0];
    return new TaskdError('INVALID_REQUEST', first ? `${first.field}: ${first.message}` : 'The request is invalid.', { issues });
  }
  const mapped = err.code ? FASTIFY_CODES[err.code] : undefined;
  if (mapped) return mapped();
  if (typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500) {
    return new TaskdError('INVALID_REQUEST', err.message);
  }
  return new TaskdError('INTERNAL');
}

export function errorHandlerPlugin(app: FastifyInstance): void {
  const allowedMethods = trackRouteMethods(app);
  app.setErrorHandler((error: unknown, request: FastifyRequest, reply: FastifyReply) => {
    const taskd = toTaskdError(error);
    if (taskd.statusCode >= 500 && taskd.code === 'TASKD_ERR_INTERNAL') request.log.error({ err: error }, 'unhandled error');
    if (request.routeOptions.url === '/v1/tasks' && request.method === 'POST') {
      app.taskd.metrics.webhookRejections.inc({ reason: taskd.code });
    }
    if (taskd.statusCode === 401 && request.headers['webhook-signature'] === undefined) {
      reply.header('www-authenticate', 'Bearer');
    }
    return reply.code(taskd.statusCode).send(toErrorBody(taskd));
  });
  app.setNotFoundHandler((request, reply) => {
    const allowed = allowedMethods(request.url);
    if (allowed) {
      const refused = new TaskdError('METHOD_NOT_ALLOWED', `${request.url.split('?')[0]} answers ${allowed.join(', ')}, not ${request.method}.`);
      return reply.code(refused.statusCode).header('allow', allowed.join(', ')).send(toErrorBody(refused));
    }
    const error = new TaskdError('ROUTE_NOT_FOUND', `No endpoint ${request.method} ${request.url.split('?')[0]}.`);
    return reply.code(error.statusCode).send(toErrorBody(error));
  });
}
