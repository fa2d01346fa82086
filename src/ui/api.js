const csrf = document.querySelector('meta[name="csrf-token"]')?.content ?? '';

/** Calls the documented API with the session cookie; a change carries the page's CSRF token. An error keeps its TASKD_ERR_ code. */
export async function api(method, path, body) {
  const headers = { accept: 'application/json' };
  if (method !== 'GET') headers['x-taskd-csrf'] = csrf;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const response = await fetch(path, { method, headers, credentials: 'same-origin', body: body === undefined ? undefined : JSON.stringify(body) });
  const isJson = (response.headers.get('content-type') ?? '').includes('json');
  const data = isJson ? await response.json() : await response.text();
  if (!response.ok) {
    const error = new Error(isJson ? data.message : response.statusText);
    error.code = isJson && data.error ? data.error : `HTTP ${response.status}`;
    error.status = response.status;
    throw error;
  }
  return data;
}

/** Follows a task's log as it is written (GET /v1/tasks/{nid}/log?follow=1) until it ends or the signal aborts. */
export async function followLog(nid, signal, onText) {
  const response = await fetch(`v1/tasks/${nid}/log?follow=1`, { credentials: 'same-origin', signal });
  if (!response.ok) {
    const data = await response.json().catch(() => ({}));
    const error = new Error(data.message ?? response.statusText);
    error.code = data.error ?? `HTTP ${response.status}`;
    throw error;
  }
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    onText(value);
  }
}
