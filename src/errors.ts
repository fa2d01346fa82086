/**
 * The one list of errors the service answers with. Each has a stable code
 * (clients and the Drupal module may switch on it), an HTTP status and a
 * default message; the error handler in app.ts is the only place that turns
 * them into responses.
 */
export const errorCatalog = {
  BODY_TOO_LARGE: { status: 413, message: 'The request body is larger than 64 KiB.' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, message: 'The request body must be JSON (content-type: application/json).' },
  SIGNATURE_MISSING: { status: 401, message: 'The request carries neither a webhook signature nor a bearer token.' },
  SIGNATURE_INVALID: { status: 401, message: 'The webhook signature does not match.' },
  SIGNATURE_STALE: { status: 401, message: 'The webhook timestamp is missing, malformed or more than 300 seconds from now.' },
  SIGNATURE_DISABLED: { status: 401, message: 'Signed intake is off: the service has no TASKD_SECRET.' },
  UNAUTHORIZED: { status: 401, message: 'The bearer token is missing or wrong.' },
  FORBIDDEN: { status: 403, message: 'No admin token is configured, so this endpoint answers loopback clients only.' },
  CROSS_SITE_REQUEST: { status: 403, message: "A change made with the dashboard's cookie must come from the dashboard: the same Origin and the x-taskd-csrf header." },
  INVALID_JSON: { status: 400, message: 'The request body is not valid JSON.' },
  INVALID_REQUEST: { status: 400, message: 'The request is invalid.' },
  TASK_NOT_FOUND: { status: 404, message: 'The service knows no task with this nid.' },
  ROUTE_NOT_FOUND: { status: 404, message: 'No such endpoint.' },
  METHOD_NOT_ALLOWED: { status: 405, message: 'This endpoint does not answer this method; the allow header lists those it does.' },
  TASK_RUNNING: { status: 409, message: 'The task is running; add ?force=1 to stop it.' },
  ORPHAN_NOT_FOUND: { status: 404, message: 'No orphan with this nid: Aegir does not show it processing without a process here, as of the last reconcile.' },
  ORPHAN_RUNNING: { status: 409, message: 'A hosting-task of this nid runs on this host; it is not an orphan.' },
  FRONTEND_NOT_CONFIGURED: { status: 409, message: 'No frontend is configured (TASKD_FRONTEND_URL).' },
  TOO_MANY_TASK_STREAMS: { status: 429, message: 'Too many clients follow this task already (TASKD_MAX_STREAMS_PER_TASK).' },
  RATE_LIMITED: { status: 429, message: 'Too many requests; retry after the time in the retry-after header.' },
  QUEUE_FULL: { status: 503, message: 'The queue is full (TASKD_MAX_QUEUED); the task was not queued here. Aegir keeps it queued: the reconciler picks it up once there is room.' },
  TOO_MANY_STREAMS: { status: 503, message: 'Too many long-lived answers are open (TASKD_MAX_STREAMS); try again later.' },
  SHUTTING_DOWN: { status: 503, message: 'The service is shutting down; the reconciler will pick the task up after restart.' },
  NOT_READY: { status: 503, message: 'The service is not ready.' },
  JOURNAL_UNAVAILABLE: { status: 503, message: 'The task could not be written to the journal (a full disk?), so it was not accepted; nothing accepted before is lost.' },
  FRONTEND_FAILED: { status: 502, message: 'The frontend did not answer as expected.' },
  INTERNAL: { status: 500, message: 'Internal error.' },
} as const satisfies Record<string, { status: number; message: string }>;

export type ErrorName = keyof typeof errorCatalog;
export type ErrorCode = `TASKD_ERR_${ErrorName}`;

export class TaskdError extends Error {
  readonly code: ErrorCode;
  readonly statusCode: number;
  readonly details: Record<string, unknown> | undefined;

  constructor(name: ErrorName, message?: string, details?: Record<string, unknown>) {
    super(message ?? errorCatalog[name].message);
    this.name = 'TaskdError';
    this.code = `TASKD_ERR_${name}`;
    this.statusCode = errorCatalog[name].status;
    this.details = details;
  }
}

export const errorCodes = Object.keys(errorCatalog).map((name) => `TASKD_ERR_${name}` as ErrorCode);

export interface ErrorBody {
  error: ErrorCode;
  message: string;
  details?: Record<string, unknown>;
}

export function toErrorBody(error: TaskdError): ErrorBody {
  return error.details === undefined
    ? { error: error.code, message: error.message }
    : { error: error.code, message: error.message, details: error.details };
}
