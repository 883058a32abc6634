// The API client: every call sends the bearer token; errors carry the spec's error body.

const TOKEN_KEY = 'weconnect.token';

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** The token's claims (`sub`, `org`), read without verifying (the server verifies). */
export function claims() {
  try {
    const part = token().split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(part));
  } catch {
    return {};
  }
}

export class ApiError extends Error {
  constructor(status, body) {
    super(body && body.message ? body.message : `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

/** Calls the API: `api('/executions', {method: 'POST', body: {...}, signal})` → JSON. */
export async function api(path, {method = 'GET', body, signal, query} = {}) {
  let url = path;
  if (query) {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) {
      if (v !== undefined && v !== null && v !== '') params.set(k, v);
    }
    const qs = params.toString();
    if (qs) url += `?${qs}`;
  }
  const headers = {Accept: 'application/json', Authorization: `Bearer ${token()}`};
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(url, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
  });
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = {message: text};
    }
  }
  if (!response.ok) {
    const error = new ApiError(response.status, data);
    if (response.status === 401) window.dispatchEvent(new CustomEvent('weconnect:unauthorized'));
    throw error;
  }
  return data;
}

export const path = (strings, ...values) =>
  strings.reduce((out, str, i) => out + str + (i < values.length ? encodeURIComponent(values[i]) : ''), '');

/**
 * Follows an execution's events by long polling (`Accept: application/json`), the form that
 * works on both shapes (API Gateway cannot stream, and EventSource cannot send a token).
 * Calls `onBatch(events)` for every batch until the terminal event or until `signal` aborts.
 */
export async function followEvents(id, onBatch, signal) {
  let after;
  let failures = 0;
  while (!signal.aborted) {
    try {
      const page = await api(path`/executions/${id}/events`, {
        query: {after, waitMs: 20000},
        signal,
      });
      failures = 0;
      if (page.events.length > 0) onBatch(page.events);
      after = page.nextCursor || after;
      if (page.done) return;
    } catch (error) {
      if (signal.aborted) return;
      if (error instanceof ApiError && error.status >= 400 && error.status < 500) throw error;
      failures += 1;
      await new Promise((resolve) => setTimeout(resolve, Math.min(1000 * failures, 10000)));
    }
  }
}
