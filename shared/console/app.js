// The WeConnect console: a hash router and one function per view. Views build their DOM with
// `h` (text only, never HTML strings) and stop their timers and requests when left.

import {api, path, token, setToken, claims, followEvents, ApiError} from './api.js';
import {h, fill, fmtTime, fmtClock, fmtDuration, shortId, badge, json, table, toast} from './dom.js';
import {drawGraph, setStatuses, select} from './graph.js';
import {barList, trendChart} from './charts.js';

const STATUSES = ['pending', 'running', 'paused', 'success', 'failed', 'cancelled', 'timeout'];
const MODES = ['manual', 'webhook', 'scheduled', 'api', 'test', 'subworkflow', 'error'];
const TERMINAL = new Set(['success', 'failed', 'cancelled', 'timeout']);
const main = document.getElementById('main');

/** Aborted when the user leaves the current view: stops its polling and timers. */
let current = new AbortController();

// ---------------------------------------------------------------------------------------------
// Routing and sign-in

const routes = [
  [/^\/workflows$/, () => workflowsView],
  [/^\/workflows\/([^/]+)$/, (m) => (signal) => workflowView(m[1], signal)],
  [/^\/executions$/, (m, query) => (signal) => executionsView(query, signal)],
  [/^\/executions\/([^/]+)$/, (m) => (signal) => executionView(m[1], signal)],
  [/^\/statistics$/, () => statisticsView],
  [/^\/circuits$/, () => circuitsView],
];

function route() {
  // The one-click link `weconnect serve` prints: /console#token=… (a fragment never reaches a
  // server or a log). Keep the token for this tab and drop it from the address bar.
  if (location.hash.startsWith('#token=')) {
    setToken(decodeURIComponent(location.hash.slice('#token='.length)));
    history.replaceState(null, '', '#/workflows');
  }
  current.abort();
  current = new AbortController();
  if (!token()) {
    signInView();
    return;
  }
  const [routePath, queryString] = (location.hash.slice(1) || '/workflows').split('?');
  const query = new URLSearchParams(queryString || '');
  const match = routes
    .map(([re, make]) => [routePath.match(re), make])
    .find(([m]) => m);
  showSignedIn();
  for (const a of document.querySelectorAll('nav a')) {
    const active = routePath.startsWith(`/${a.dataset.nav}`);
    if (active) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  if (!match) {
    location.replace('#/workflows');
    return;
  }
  const view = match[1](match[0], query);
  const signal = current.signal;
  fill(main, h('p', {class: 'loading'}, 'Loading…'));
  view(signal).catch((error) => {
    if (signal.aborted) return;
    fill(main, h('div', {class: 'alert', role: 'alert'},
      error instanceof ApiError && error.status === 404 ? 'Not found.' : `Could not load this page: ${error.message}`));
  });
}

function showSignedIn() {
  const who = claims();
  fill(document.getElementById('who'), who.sub ? `${who.sub} · ${who.org || '–'}` : '');
  document.getElementById('signout').hidden = false;
  document.querySelector('nav').hidden = false;
}

function signInView(message) {
  document.getElementById('signout').hidden = true;
  document.querySelector('nav').hidden = true;
  fill(document.getElementById('who'));
  const input = h('input', {id: 'token', name: 'token', type: 'password', autocomplete: 'off', required: true, spellcheck: 'false'});
  const error = h('p', {class: 'alert', role: 'alert', hidden: !message}, message || '');
  const form = h('form', {id: 'signin', class: 'card narrow'},
    h('h1', {}, 'Sign in'),
    h('p', {}, 'Paste the bearer token that ', h('code', {}, 'weconnect serve'), ' printed (or ',
      h('code', {}, 'weconnect token'), ' prints), or open the console link it printed.'),
    h('label', {for: 'token'}, 'Bearer token'), input, error,
    h('button', {type: 'submit'}, 'Sign in'));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    setToken(input.value.trim());
    try {
      await api('/workflows', {query: {limit: 1}});
      location.hash = '#/workflows';
      route();
    } catch (e) {
      setToken(null);
      fill(error, e.status === 401 ? 'This token was refused (wrong secret, or expired).' : e.message);
      error.hidden = false;
    }
  });
  fill(main, form);
  input.focus();
}

window.addEventListener('weconnect:unauthorized', () => {
  setToken(null);
  current.abort();
  signInView('Your token was refused (wrong secret, or expired): sign in again.');
});
window.addEventListener('hashchange', route);
document.getElementById('signout').addEventListener('click', () => {
  setToken(null);
  route();
});

/** Runs `fn` every `ms` until the view is left (skipping while the tab is hidden). */
function every(ms, signal, fn) {
  const timer = setInterval(() => {
    if (!document.hidden) fn().catch(() => {});
  }, ms);
  signal.addEventListener('abort', () => clearInterval(timer));
}

function heading(title, ...extra) {
  return h('div', {class: 'heading'}, h('h1', {}, title), ...extra);
}

function link(href, text) {
  return h('a', {href}, text);
}

async function act(label, fn) {
  try {
    const result = await fn();
    toast(label);
    return result;
  } catch (error) {
    toast(error.message, 'error');
    return null;
  }
}

// ---------------------------------------------------------------------------------------------
// Workflows

async function workflowsView(signal) {
  const list = h('div', {});
  const more = h('button', {type: 'button', class: 'quiet', hidden: true}, 'More');
  let cursor = null;
  let rows = [];
  const load = async () => {
    const page = await api('/workflows', {query: {limit: 100, cursor}, signal});
    rows = rows.concat(page.items);
    cursor = page.nextCursor;
    more.hidden = !cursor;
    fill(list, table([
      {label: 'Name', cell: (w) => link(`#/workflows/${w.id}`, w.name)},
      {label: 'Status', cell: (w) => badge(w.status)},
      {label: 'Version', cell: (w) => w.version},
      {label: 'Nodes', cell: (w) => w.nodes.length},
      {label: 'Executions', cell: (w) => w.executionCount},
      {label: 'Last run', cell: (w) => fmtTime(w.lastExecutedAt)},
      {label: 'Updated', cell: (w) => fmtTime(w.updatedAt)},
    ], rows, (w) => ({'data-workflow-id': w.id, class: 'clickable', onclick: (e) => {
      if (e.target.tagName !== 'A') location.hash = `#/workflows/${w.id}`;
    }})));
  };
  more.addEventListener('click', () => load().catch((e) => toast(e.message, 'error')));
  await load();
  fill(main, heading('Workflows'), list, more,
    rows.length === 0 ? h('p', {class: 'hint'}, 'Create a workflow with POST /workflows (see the README), then run it here.') : null);
}

async function workflowView(id, signal) {
  const wf = await api(path`/workflows/${id}`, {signal});
  const panel = h('aside', {id: 'node-panel', class: 'panel', 'aria-live': 'polite'},
    h('p', {class: 'hint'}, 'Select a node to see its definition.'));
  const graph = drawGraph(wf.nodes, wf.connections, (nodeId) => {
    const node = wf.nodes.find((n) => n.id === nodeId);
    select(graph, nodeId);
    fill(panel, h('h2', {}, node.name || node.id), h('p', {class: 'muted'}, `${node.id} · ${node.type}`), json(node));
  });

  const input = h('textarea', {id: 'run-input', rows: 3, spellcheck: 'false'}, '{}');
  const run = h('form', {class: 'run'},
    h('label', {for: 'run-input'}, 'Input (JSON object)'), input,
    h('button', {id: 'run', type: 'submit'}, 'Run'));
  run.addEventListener('submit', async (event) => {
    event.preventDefault();
    let inputData;
    try {
      inputData = JSON.parse(input.value || '{}');
    } catch (e) {
      toast(`The input is not JSON: ${e.message}`, 'error');
      return;
    }
    const exec = await act('Execution started', () =>
      api('/executions', {method: 'POST', body: {workflowId: wf.id, mode: 'manual', inputData}}));
    if (exec) location.hash = `#/executions/${exec.id}`;
  });

  const trends = h('div', {});
  const interval = h('select', {id: 'trend-interval'},
    h('option', {value: 'day'}, 'per day (last 7 days)'), h('option', {value: 'hour'}, 'per hour (last 24 h)'));
  const loadTrends = async () => {
    const hours = interval.value === 'hour' ? 24 : 24 * 7;
    const startDate = new Date(Date.now() - hours * 3600 * 1000).toISOString();
    const t = await api(path`/workflows/${id}/trends`, {query: {interval: interval.value, startDate}, signal});
    fill(trends, t.items.length === 0 ? h('p', {class: 'hint'}, 'No executions in this period.') : trendChart(t.items, t.interval));
  };
  interval.addEventListener('change', () => loadTrends().catch((e) => toast(e.message, 'error')));

  const recent = h('div', {});
  const loadRecent = async () => {
    const page = await api(path`/executions/workflow/${id}`, {query: {limit: 10}, signal});
    fill(recent, executionTable(page.items, new Map([[wf.id, wf.name]])));
  };

  await Promise.all([loadTrends(), loadRecent()]);
  fill(main,
    heading(wf.name, badge(wf.status), h('span', {class: 'muted'}, `version ${wf.version}`)),
    wf.description ? h('p', {}, wf.description) : null,
    h('p', {class: 'muted'}, `Updated ${fmtTime(wf.updatedAt)} · ${wf.executionCount} executions · id ${wf.id}`),
    run,
    h('div', {class: 'split'}, h('div', {class: 'graph-box'}, graph), panel),
    h('section', {}, h('h2', {}, 'Trends ', interval), trends),
    h('section', {}, h('h2', {}, 'Recent executions'), recent),
    h('details', {}, h('summary', {}, 'Definition (JSON)'),
      json({nodes: wf.nodes, connections: wf.connections, settings: wf.settings})));
  every(5000, signal, loadRecent);
}

// ---------------------------------------------------------------------------------------------
// Executions

function executionTable(items, names) {
  return table([
    {label: 'Execution', cell: (e) => link(`#/executions/${e.id}`, shortId(e.id))},
    {label: 'Workflow', cell: (e) => names.get(e.workflowId) || shortId(e.workflowId)},
    {label: 'Status', cell: (e) => [badge(e.status), e.pendingReason ? h('span', {class: 'muted'}, ` (${e.pendingReason})`) : null]},
    {label: 'Mode', cell: (e) => e.mode},
    {label: 'Created', cell: (e) => fmtTime(e.createdAt)},
    {label: 'Duration', cell: (e) => (TERMINAL.has(e.status) ? fmtDuration(e.duration) : '–')},
    {label: 'Nodes', cell: (e) => `${e.nodesExecuted}${e.nodesFailed ? ` (${e.nodesFailed} failed)` : ''}`},
  ], items, (e) => ({'data-execution-id': e.id, class: 'clickable', onclick: (ev) => {
    if (ev.target.tagName !== 'A') location.hash = `#/executions/${e.id}`;
  }}));
}

function options(values, chosen, anyLabel) {
  return [h('option', {value: ''}, anyLabel),
    values.map((v) => h('option', {value: v, selected: v === chosen}, v))];
}

/** `datetime-local` value ↔ RFC 3339. */
const toLocalInput = (iso) => {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
};
const fromLocalInput = (value) => (value ? new Date(value).toISOString() : '');

async function executionsView(query, signal) {
  const workflows = await api('/workflows', {query: {limit: 100}, signal});
  const names = new Map(workflows.items.map((w) => [w.id, w.name]));
  const status = h('select', {id: 'filter-status', name: 'status'}, options(STATUSES, query.get('status'), 'any status'));
  const mode = h('select', {id: 'filter-mode', name: 'mode'}, options(MODES, query.get('mode'), 'any mode'));
  const workflow = h('input', {id: 'filter-workflow', name: 'workflowId', list: 'workflow-ids', value: query.get('workflowId') || '', placeholder: 'any workflow', size: 38});
  const ids = h('datalist', {id: 'workflow-ids'}, workflows.items.map((w) => h('option', {value: w.id}, w.name)));
  const start = h('input', {id: 'filter-start', name: 'startDate', type: 'datetime-local', value: toLocalInput(query.get('startDate'))});
  const end = h('input', {id: 'filter-end', name: 'endDate', type: 'datetime-local', value: toLocalInput(query.get('endDate'))});
  const live = h('input', {id: 'filter-live', type: 'checkbox', checked: true});
  const field = (label, control) => h('label', {class: 'field'}, h('span', {}, label), control);
  const form = h('form', {class: 'filters', role: 'search'},
    field('Status', status), field('Mode', mode), field('Workflow id', workflow), ids,
    field('Created from', start), field('to', end),
    h('label', {class: 'field inline'}, live, h('span', {}, 'Live')));
  const list = h('div', {});
  const more = h('button', {type: 'button', class: 'quiet', hidden: true}, 'More');
  let items = [];
  let cursor = null;

  const filters = () => ({
    status: status.value,
    mode: mode.value,
    workflowId: workflow.value.trim(),
    startDate: fromLocalInput(start.value),
    endDate: fromLocalInput(end.value),
  });
  const load = async (append) => {
    const page = await api('/executions', {query: {...filters(), limit: 50, cursor: append ? cursor : null}, signal});
    items = append ? items.concat(page.items) : page.items;
    cursor = page.nextCursor;
    more.hidden = !cursor;
    fill(list, executionTable(items, names));
  };
  const apply = () => {
    const q = new URLSearchParams(Object.entries(filters()).filter(([, v]) => v)).toString();
    history.replaceState(null, '', `#/executions${q ? `?${q}` : ''}`);
    load(false).catch((e) => toast(e.message, 'error'));
  };
  form.addEventListener('change', apply);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    apply();
  });
  more.addEventListener('click', () => load(true).catch((e) => toast(e.message, 'error')));
  await load(false);
  fill(main, heading('Executions'), form, list, more);
  // Live: the first page is read again every 3 s (more pages stay as loaded).
  every(3000, signal, async () => {
    if (live.checked && items.length <= 50) await load(false);
  });
}

/** The connections to draw for `detail`: its workflow's, or its inline child workflow's. */
function connectionsOf(detail, wf) {
  if (!wf) return [];
  if (detail.inlineOf) {
    const owner = wf.nodes.find((n) => n.id === detail.inlineOf);
    return (owner && owner.parameters && owner.parameters.workflow && owner.parameters.workflow.connections) || [];
  }
  return wf.connections;
}

async function executionView(id, signal) {
  let detail = await api(path`/executions/${id}`, {signal});
  const wf = await api(path`/workflows/${detail.workflowId}`, {signal}).catch(() => null);
  const connections = connectionsOf(detail, wf);
  const parentsOf = (nodeId) => connections.filter((c) => c.target === nodeId).map((c) => c.source);
  let selected = null;

  const statusEl = h('span', {id: 'execution-status'});
  const progress = h('progress', {max: 100, value: 0, 'aria-label': 'Progress'});
  const progressText = h('span', {class: 'muted'});
  const meta = h('dl', {class: 'meta wide'});
  const errorBox = h('div', {});
  const actions = h('div', {class: 'actions'});
  const panel = h('aside', {id: 'node-panel', class: 'panel', 'aria-live': 'polite'});
  const nodesTable = h('div', {});
  const children = h('section', {hidden: true});
  const logRows = h('tbody', {});
  const logs = h('table', {id: 'logs', class: 'logs'},
    h('thead', {}, h('tr', {}, ['Time', 'Level', 'Node', 'Message'].map((t) => h('th', {scope: 'col'}, t)))),
    logRows);
  let logCount = 0;

  const statuses = new Map(detail.nodes.map((n) => [n.nodeId, {status: n.status, attempts: n.attempts}]));
  const graph = drawGraph(
    detail.nodes.map((n) => ({id: n.nodeId, name: n.name, type: n.type})),
    connections,
    (nodeId) => {
      selected = nodeId;
      renderPanel();
    },
  );

  function renderHeader() {
    fill(statusEl, badge(detail.status));
    progress.value = detail.progress.percent;
    fill(progressText, `${detail.progress.finished} of ${detail.progress.total} nodes`);
    const e = detail;
    const row = (term, value) => (value === null || value === undefined || value === '' ? null : h('div', {}, h('dt', {}, term), h('dd', {}, value)));
    fill(meta,
      row('Workflow', wf ? link(`#/workflows/${wf.id}`, `${wf.name} (version ${e.workflowVersion})`) : `${e.workflowId} (version ${e.workflowVersion})`),
      row('Mode', e.mode),
      row('Priority', e.priority),
      row('Waiting for', e.pendingReason),
      row('Created', fmtTime(e.createdAt)),
      row('Started', e.startedAt && fmtTime(e.startedAt)),
      row('Completed', e.completedAt && fmtTime(e.completedAt)),
      row('Duration', TERMINAL.has(e.status) ? fmtDuration(e.duration) : null),
      row('Deadline', fmtTime(e.deadline)),
      row('Retry of', e.retryOf && link(`#/executions/${e.retryOf}`, shortId(e.retryOf))),
      row('Parent', e.parentExecutionId && link(`#/executions/${e.parentExecutionId}`,
        `${shortId(e.parentExecutionId)} · ${e.parentNodeId}${e.itemIndex !== null ? ` [${e.itemIndex}]` : ''}`)));
    fill(errorBox, e.errorMessage ? h('div', {class: 'alert', role: 'alert'}, h('strong', {}, 'Error: '), e.errorMessage) : null);
    renderActions();
  }

  function renderActions() {
    const s = detail.status;
    const button = (action, label, allowed, run) => (allowed
      ? h('button', {type: 'button', 'data-action': action, class: action === 'cancel' ? 'danger' : '', onclick: run}, label)
      : null);
    const move = (action) => async () => {
      if (action === 'cancel' && !window.confirm('Cancel this execution?')) return;
      const done = {pause: 'paused', resume: 'resumed', cancel: 'cancelled'}[action];
      const exec = await act(`Execution ${done}`,
        () => api(path`/executions/${id}/${action}`, {method: 'POST'}));
      if (exec) await refresh();
    };
    const again = (fromFailedNode) => async () => {
      const exec = await act(fromFailedNode ? 'Redrive started' : 'Retry started',
        () => api(path`/executions/${id}/retry`, {method: 'POST', body: {fromFailedNode}}));
      if (exec) location.hash = `#/executions/${exec.id}`;
    };
    fill(actions,
      button('pause', 'Pause', s === 'pending' || s === 'running', move('pause')),
      button('resume', 'Resume', s === 'paused', move('resume')),
      button('cancel', 'Cancel', !TERMINAL.has(s), move('cancel')),
      button('retry', 'Retry', TERMINAL.has(s), again(false)),
      button('redrive', 'Redrive from the failed node', s === 'failed' || s === 'timeout' || s === 'cancelled', again(true)));
  }

  function inputOf(node) {
    const parents = parentsOf(node.nodeId);
    if (parents.length === 0) return detail.inputData;
    const input = {};
    for (const p of parents) {
      const run = detail.nodes.find((n) => n.nodeId === p);
      if (run && run.status === 'success') input[p] = run.output;
    }
    return input;
  }

  function callbackForm(node) {
    const body = h('textarea', {id: 'callback-body', rows: 3, spellcheck: 'false'}, '{}');
    const message = h('input', {id: 'callback-message', placeholder: 'Reason (optional)'});
    const send = (kind) => async () => {
      let payload;
      if (kind === 'complete') {
        try {
          payload = JSON.parse(body.value || 'null');
        } catch (e) {
          toast(`The body is not JSON: ${e.message}`, 'error');
          return;
        }
      } else {
        payload = message.value ? {message: message.value} : {};
      }
      const done = await act(kind === 'complete' ? 'Callback completed' : 'Callback failed',
        () => api(path`/executions/${id}/nodes/${node.nodeId}/${kind}`, {method: 'POST', body: payload}));
      if (done) await refresh();
    };
    return h('div', {class: 'callback'},
      h('h3', {}, 'Waiting for its callback'),
      h('p', {class: 'muted'}, 'URL: ', h('code', {}, node.callback.url)),
      node.callback.expiresAt ? h('p', {class: 'muted'}, `Expires ${fmtTime(node.callback.expiresAt)}`) : null,
      h('label', {for: 'callback-body'}, 'Body (JSON)'), body,
      h('button', {type: 'button', 'data-action': 'complete', onclick: send('complete')}, 'Complete'),
      h('label', {for: 'callback-message'}, 'Failure message'), message,
      h('button', {type: 'button', class: 'danger', 'data-action': 'fail', onclick: send('fail')}, 'Fail'));
  }

  function renderPanel() {
    select(graph, selected);
    const node = detail.nodes.find((n) => n.nodeId === selected);
    if (!node) {
      fill(panel, h('p', {class: 'hint'}, 'Select a node in the graph (or the table) to see its input, output, error and attempts.'));
      return;
    }
    const error = node.error;
    fill(panel,
      h('h2', {}, node.name || node.nodeId),
      h('p', {class: 'muted'}, `${node.nodeId} · ${node.type}`),
      h('dl', {class: 'meta'},
        h('dt', {}, 'Status'), h('dd', {}, badge(node.status)),
        h('dt', {}, 'Attempts'), h('dd', {}, String(node.attempts)),
        h('dt', {}, 'Started'), h('dd', {}, fmtTime(node.startedAt)),
        h('dt', {}, 'Finished'), h('dd', {}, fmtTime(node.finishedAt)),
        h('dt', {}, 'Duration'), h('dd', {}, fmtDuration(node.durationMs))),
      error ? h('div', {class: 'alert', role: 'alert'},
        h('strong', {}, `${error.kind}${error.statusCode ? ` (HTTP ${error.statusCode})` : ''}: `), error.message,
        error.details ? json(error.details) : null) : null,
      node.status === 'waiting' && node.callback ? callbackForm(node) : null,
      h('h3', {}, 'Input'), json(inputOf(node)),
      h('h3', {}, 'Output'), outputView(node));
  }

  /** A node's output; one over 64 KiB is a reference (SPEC §12), loaded on demand. */
  function outputView(node) {
    const out = node.output;
    if (out === null && node.status !== 'success') return h('p', {class: 'muted'}, 'None yet.');
    if (out && typeof out === 'object' && typeof out.outputRef === 'string' && Object.keys(out).length === 2) {
      const box = h('div', {});
      const kib = Math.round(out.outputSize / 1024);
      const load = h('button', {type: 'button', class: 'quiet', 'data-action': 'load-output', onclick: async () => {
        try {
          fill(box, json(await api(out.outputRef, {signal})));
        } catch (e) {
          toast(e.message, 'error');
        }
      }}, `Load the whole output (${kib} KiB)`);
      return fill(box, h('p', {class: 'muted'}, 'Too large to show inline. '), load);
    }
    return json(out);
  }

  function renderNodes() {
    fill(nodesTable, table([
      {label: 'Node', cell: (n) => h('button', {type: 'button', class: 'link', onclick: () => {
        selected = n.nodeId;
        renderPanel();
      }}, n.name || n.nodeId)},
      {label: 'Type', cell: (n) => n.type},
      {label: 'Status', cell: (n) => badge(n.status)},
      {label: 'Attempts', cell: (n) => n.attempts},
      {label: 'Started', cell: (n) => fmtTime(n.startedAt)},
      {label: 'Duration', cell: (n) => fmtDuration(n.durationMs)},
    ], detail.nodes));
  }

  async function loadChildren() {
    if (!detail.nodes.some((n) => n.type === 'flow.map' || n.type === 'flow.subworkflow')) return;
    const page = await api('/executions', {query: {parentExecutionId: id, limit: 100}, signal});
    children.hidden = page.items.length === 0;
    fill(children, h('h2', {}, 'Child executions'), executionTable(page.items, new Map(wf ? [[wf.id, wf.name]] : [])));
  }

  function renderAll() {
    // Until the user picks a node, show the one that failed.
    if (!selected) selected = (detail.nodes.find((n) => n.status === 'failed') || {}).nodeId || null;
    for (const n of detail.nodes) statuses.set(n.nodeId, {status: n.status, attempts: n.attempts});
    setStatuses(graph, statuses);
    renderHeader();
    renderPanel();
    renderNodes();
  }

  async function refresh() {
    detail = await api(path`/executions/${id}`, {signal});
    renderAll();
    await loadChildren();
  }

  // Events change the graph and header at once; the detail (outputs, timing) follows.
  let refreshTimer = null;
  const refreshSoon = () => {
    if (refreshTimer) return;
    refreshTimer = setTimeout(() => {
      refreshTimer = null;
      refresh().catch(() => {});
    }, 250);
  };
  function onEvents(events) {
    let changed = false;
    for (const event of events) {
      if (event.event === 'node') {
        const run = detail.nodes.find((n) => n.nodeId === event.data.nodeId);
        if (run) Object.assign(run, {status: event.data.status, attempts: event.data.attempts, error: event.data.error});
        changed = true;
      } else if (event.event === 'execution') {
        detail.status = event.data.status;
        detail.progress = event.data.progress;
        changed = true;
      } else if (event.event === 'log') {
        appendLog(event.data);
      }
    }
    if (changed) {
      for (const n of detail.nodes) statuses.set(n.nodeId, {status: n.status, attempts: n.attempts});
      setStatuses(graph, statuses);
      renderHeader();
      refreshSoon();
    }
  }

  const MAX_LOGS = 2000;
  function appendLog(entry) {
    logCount += 1;
    if (logCount > MAX_LOGS) return;
    logRows.append(h('tr', {class: `level-${entry.level}`},
      h('td', {title: fmtTime(entry.timestamp)}, h('time', {datetime: entry.timestamp}, fmtClock(entry.timestamp))),
      h('td', {}, entry.level),
      h('td', {}, entry.nodeName || entry.nodeId || '–'),
      h('td', {}, entry.message, entry.data ? h('code', {class: 'log-data'}, ` ${JSON.stringify(entry.data)}`) : null)));
  }

  renderAll();
  await loadChildren();
  fill(main,
    heading(`Execution ${shortId(id)}`, statusEl, progress, progressText),
    meta, errorBox, actions,
    h('div', {class: 'split'}, h('div', {class: 'graph-box'}, graph), panel),
    h('section', {}, h('h2', {}, 'Nodes'), nodesTable),
    children,
    h('section', {}, h('h2', {}, 'Logs'), logs));

  followEvents(id, onEvents, signal)
    .then(() => {
      if (!signal.aborted) refresh().catch(() => {});
    })
    .catch((error) => {
      if (!signal.aborted) toast(`Live updates stopped: ${error.message}`, 'error');
    });
  if (logCount > MAX_LOGS) toast(`Showing the first ${MAX_LOGS} log entries (GET /executions/${id}/logs has them all)`);
}

// ---------------------------------------------------------------------------------------------
// Statistics and circuits

/** `inFlight` → `in flight`. */
const words = (key) => key.replace(/[A-Z]/g, (c) => ` ${c.toLowerCase()}`);

async function statisticsView(signal) {
  const period = h('select', {id: 'stats-period'},
    h('option', {value: ''}, 'all time'),
    h('option', {value: '24'}, 'last 24 hours'),
    h('option', {value: '168'}, 'last 7 days'));
  const body = h('div', {});
  const load = async () => {
    const startDate = period.value ? new Date(Date.now() - Number(period.value) * 3600 * 1000).toISOString() : null;
    const [stats, health] = await Promise.all([
      api('/executions/statistics', {query: {startDate}, signal}),
      api('/monitoring/health', {signal}),
    ]);
    const card = (label, value) => h('div', {class: 'card stat'}, h('span', {class: 'muted'}, label), h('strong', {}, value));
    fill(body,
      h('div', {class: 'cards'},
        card('Executions', String(stats.total)),
        card('Success rate', `${(stats.successRate * 100).toFixed(1)} %`),
        card('Average duration', fmtDuration(stats.averageDuration)),
        card('p95 duration', fmtDuration(stats.p95Duration))),
      h('div', {class: 'charts'},
        h('figure', {}, h('figcaption', {}, 'By status'),
          barList('Executions by status', STATUSES.map((k) => ({label: k, value: stats.byStatus[k] || 0, cls: `status-${k}`})))),
        h('figure', {}, h('figcaption', {}, 'By mode'),
          barList('Executions by mode', MODES.map((k) => ({label: k, value: stats.byMode[k] || 0}))))),
      h('h2', {}, 'Now'),
      h('div', {class: 'cards'},
        Object.entries(health.queue || {}).map(([k, v]) => card(`Jobs ${words(k)}`, String(v))),
        Object.entries(health.executions || {}).map(([k, v]) => card(`Executions ${words(k)}`, String(v)))),
      h('p', {class: 'hint'}, 'Trends per workflow are on each workflow\'s page.'));
  };
  period.addEventListener('change', () => load().catch((e) => toast(e.message, 'error')));
  await load();
  fill(main, heading('Statistics', period), body);
  every(10000, signal, load);
}

async function circuitsView(signal) {
  const body = h('div', {});
  const load = async () => {
    const page = await api('/circuits', {query: {limit: 100}, signal});
    fill(body, table([
      {label: 'Key', cell: (c) => h('code', {}, c.key)},
      {label: 'State', cell: (c) => badge(c.state)},
      {label: 'Failures', cell: (c) => String(c.failures)},
      {label: 'Opened', cell: (c) => fmtTime(c.openedAt)},
      {label: 'Next trial', cell: (c) => fmtTime(c.nextTrialAt)},
      {label: 'Threshold', cell: (c) => String(c.config.failureThreshold)},
      {label: 'Open for', cell: (c) => fmtDuration(c.config.timeoutMs)},
      {label: 'Trial after', cell: (c) => fmtDuration(c.config.resetTimeoutMs)},
      {label: '', cell: (c) => h('button', {type: 'button', class: 'quiet', 'data-action': 'reset', onclick: async () => {
        if (await act(`Circuit ${c.key} reset`, () => api(path`/circuits/${c.key}/reset`, {method: 'POST'}))) await load();
      }}, 'Reset')},
    ], page.items, (c) => ({'data-circuit-key': c.key})));
  };
  await load();
  fill(main, heading('Circuits'),
    h('p', {class: 'hint'}, 'One circuit per key (the HTTP node\'s host, or its circuitKey): it opens after the threshold of consecutive failures, fails calls fast while open, then lets one trial call through.'),
    body);
  every(5000, signal, load);
}

route();
