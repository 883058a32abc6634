// The web console in headless Chromium against a real `weconnect serve` (temporary data folder,
// free port) whose HTTP nodes call a service this test runs: sign in, run a workflow and watch
// a node go from running to success without reloading, open a failed execution and redrive
// it, filter the executions, statistics and circuits. Screenshots go to $SCREENSHOT_DIR.

import {test, before, after} from 'node:test';
import assert from 'node:assert/strict';
import {spawn, execFileSync} from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import {mkdtempSync, mkdirSync, rmSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {chromium} from 'playwright-core';

const BIN = process.env.WECONNECT_BIN;
const SHOTS = process.env.SCREENSHOT_DIR || join(process.cwd(), 'screenshots');
const WAIT = 20000;
const CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--disable-sync'];

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const {port} = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** The service the workflows call: `/hold` answers when released, `/flaky` fails its first call (slowly). */
class Service {
  constructor() {
    this.held = [];
    this.waiters = [];
    this.calls = {hold: 0, flaky: 0};
    this.server = http.createServer((req, res) => {
      const reply = (status, body) => {
        res.writeHead(status, {'content-type': 'application/json'});
        res.end(JSON.stringify(body));
      };
      if (req.url.startsWith('/hold')) {
        this.calls.hold += 1;
        this.held.push(() => reply(200, {ok: true, held: true}));
        this.waiters.splice(0).forEach((wake) => wake());
      } else if (req.url.startsWith('/flaky')) {
        this.calls.flaky += 1;
        // The first call fails after a moment: the console is open while the node runs.
        if (this.calls.flaky === 1) setTimeout(() => reply(500, {ok: false}), 700);
        else reply(200, {ok: true, call: this.calls.flaky});
      } else {
        reply(404, {});
      }
    });
  }

  async start() {
    await new Promise((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${this.server.address().port}`;
  }

  /** Resolves once a request is held. */
  async heldRequest() {
    const deadline = Date.now() + WAIT;
    while (this.held.length === 0) {
      if (Date.now() > deadline) throw new Error('the workflow never called the held service');
      await new Promise((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 200);
      });
    }
  }

  releaseAll() {
    this.held.splice(0).forEach((answer) => answer());
  }

  stop() {
    this.releaseAll();
    this.server.closeAllConnections();
    this.server.close();
  }
}

let dataDir;
let server;
let serverOutput = '';
let base;
let token;
let service;
let browser;
let page;
const workflows = {};

async function call(method, path, body) {
  const response = await fetch(`${base}${path}`, {
    method,
    headers: {Authorization: `Bearer ${token}`, 'Content-Type': 'application/json'},
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

function callWorkflow(name, url) {
  return {
    name,
    nodes: [
      {id: 'start', name: 'Start', type: 'trigger.manual', parameters: {}},
      {id: 'call', name: 'Call service', type: 'http.request', parameters: {method: 'GET', url},
        retry: {maxAttempts: 1}},
      {id: 'shape', name: 'Shape', type: 'data.set', parameters: {values: {done: true}}},
    ],
    connections: [{source: 'start', target: 'call'}, {source: 'call', target: 'shape'}],
  };
}

async function shot(name) {
  await page.screenshot({path: join(SHOTS, name), fullPage: true});
}

/** Waits for `selector`, failing with what the page shows instead. */
async function see(selector, what) {
  try {
    await page.waitForSelector(selector, {timeout: WAIT});
  } catch {
    const text = await page.textContent('main').catch(() => '?');
    throw new Error(`${what}: ${selector} never appeared; the page shows: ${text.slice(0, 600)}`);
  }
}

async function executionStatus(id) {
  return (await call('GET', `/executions/${id}`)).status;
}

before(async () => {
  assert.ok(BIN, 'WECONNECT_BIN must name the weconnect binary (tests/browser/run.sh sets it)');
  mkdirSync(SHOTS, {recursive: true});
  dataDir = mkdtempSync(join(tmpdir(), 'weconnect-browser-'));
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  const env = {
    ...process.env,
    WECONNECT_DATA_DIR: dataDir,
    WECONNECT_PORT: String(port),
    WECONNECT_HTTP_ALLOW_PRIVATE: 'true',
    RUST_LOG: 'warn',
  };
  server = spawn(BIN, ['serve'], {env, stdio: ['ignore', 'pipe', 'pipe']});
  server.stdout.on('data', (d) => { serverOutput += d; });
  server.stderr.on('data', (d) => { serverOutput += d; });
  const deadline = Date.now() + 30000;
  for (;;) {
    try {
      if ((await fetch(`${base}/health`)).ok) break;
    } catch {
      // not listening yet
    }
    if (server.exitCode !== null || Date.now() > deadline) {
      throw new Error(`weconnect serve did not start:\n${serverOutput}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  token = execFileSync(BIN, ['token', '--sub', 'browser', '--org', 'browser'], {env}).toString().trim();

  service = new Service();
  await service.start();
  workflows.held = await call('POST', '/workflows', callWorkflow('Held call', `${service.url}/hold`));
  workflows.flaky = await call('POST', '/workflows', callWorkflow('Flaky call', `${service.url}/flaky`));

  browser = await chromium.launch({executablePath: '/usr/bin/chromium', args: CHROMIUM_FLAGS});
  page = await browser.newPage({viewport: {width: 1280, height: 800}});
  page.on('pageerror', (error) => { serverOutput += `\n[page error] ${error.message}`; });
});

after(async () => {
  await browser?.close();
  service?.stop();
  server?.kill('SIGTERM');
  if (server && server.exitCode === null) await new Promise((resolve) => server.once('exit', resolve));
  if (dataDir) rmSync(dataDir, {recursive: true, force: true});
});

test('signs in with the token, and with the one-click link', async () => {
  await page.goto(`${base}/console`);
  await see('form#signin input#token', 'sign-in form');
  assert.equal(await page.textContent('label[for="token"]'), 'Bearer token');
  await page.fill('input#token', 'not-a-token');
  await page.click('form#signin button[type="submit"]');
  await page.waitForFunction(() => /refused/.test(document.querySelector('form#signin [role="alert"]')?.textContent || ''),
    null, {timeout: WAIT});

  await page.fill('input#token', token);
  await page.click('form#signin button[type="submit"]');
  await see(`tr[data-workflow-id="${workflows.held.id}"]`, 'workflows list');
  await see(`tr[data-workflow-id="${workflows.flaky.id}"]`, 'workflows list');
  assert.match(await page.textContent('main'), /Held call/);
  await shot('workflows.png');

  const fresh = await browser.newPage();
  await fresh.goto(`${base}/console#token=${token}`);
  await fresh.waitForSelector(`tr[data-workflow-id="${workflows.held.id}"]`, {timeout: WAIT});
  const hash = await fresh.evaluate(() => location.hash);
  assert.equal(hash, '#/workflows', 'the token is dropped from the address bar');
  await fresh.close();
});

test('runs a workflow and watches its node go from running to success without reloading', async () => {
  await page.click(`tr[data-workflow-id="${workflows.held.id}"]`);
  await see('svg#graph g.node[data-node-id="call"]', 'workflow graph');
  for (const id of ['start', 'call', 'shape']) {
    assert.equal(await page.locator(`svg#graph g.node[data-node-id="${id}"]`).count(), 1, `node ${id} drawn`);
  }
  assert.equal(await page.locator('svg#graph g.edge').count(), 2, 'two connections drawn');
  await shot('workflow.png');

  await page.click('button#run');
  await page.waitForFunction(() => /^#\/executions\/[^/]+$/.test(location.hash), null, {timeout: WAIT});
  const execId = (await page.evaluate(() => location.hash)).split('/')[2];
  await see('svg#graph g.node[data-node-id="call"][data-status="running"]', 'the held node running');
  await service.heldRequest();
  assert.equal(service.calls.hold, 1);
  assert.match(await page.textContent('#execution-status'), /running/);
  await shot('execution-running.png');

  await page.evaluate(() => { window.noReload = true; });
  service.releaseAll();
  await see('svg#graph g.node[data-node-id="call"][data-status="success"]', 'the node after its answer');
  await see('svg#graph g.node[data-node-id="shape"][data-status="success"]', 'the last node');
  await page.waitForFunction(() => /success/.test(document.querySelector('#execution-status').textContent), null, {timeout: WAIT});
  assert.equal(await page.evaluate(() => window.noReload), true, 'the page was not reloaded');
  assert.equal(await executionStatus(execId), 'success');

  await page.click('svg#graph g.node[data-node-id="call"]');
  await page.waitForFunction(() => /"held": true/.test(document.querySelector('#node-panel').textContent), null, {timeout: WAIT});
  await see('#logs tr.level-info', 'logs');
  await shot('execution-success.png');
});

test('opens a failed execution and redrives it from the failed node', async () => {
  const failed = await call('POST', '/executions', {workflowId: workflows.flaky.id, mode: 'manual'});
  await page.goto(`${base}/console#/executions/${failed.id}`);
  await see('svg#graph g.node[data-node-id="call"][data-status="failed"]', 'the failed node');
  await page.waitForFunction(() => /failed/.test(document.querySelector('#execution-status').textContent), null, {timeout: WAIT});
  // The failed node is shown without a click once the detail has it.
  await page.waitForFunction(() => /HTTP 500/.test(document.querySelector('#node-panel').textContent), null, {timeout: WAIT});
  await shot('execution-failed.png');

  await page.click('button[data-action="redrive"]');
  await page.waitForFunction((old) => /^#\/executions\/[^/]+$/.test(location.hash) && !location.hash.includes(old),
    failed.id, {timeout: WAIT});
  const redriveId = (await page.evaluate(() => location.hash)).split('/')[2];
  await see('svg#graph g.node[data-node-id="shape"][data-status="success"]', 'the redriven execution');
  await page.waitForFunction(() => /success/.test(document.querySelector('#execution-status').textContent), null, {timeout: WAIT});
  assert.equal(await page.getAttribute('svg#graph g.node[data-node-id="start"]', 'data-status'), 'success');
  const redrive = await call('GET', `/executions/${redriveId}`);
  assert.equal(redrive.retryOf, failed.id);
  assert.equal(redrive.status, 'success');
  assert.equal(service.calls.flaky, 2, 'the redrive called the service once more');
  await shot('execution-redriven.png');
  workflows.failedExecution = failed.id;
  workflows.redriveExecution = redriveId;
});

test('filters the executions list', async () => {
  await page.goto(`${base}/console#/executions`);
  await see(`tr[data-execution-id="${workflows.redriveExecution}"]`, 'executions list');
  await page.selectOption('select#filter-status', 'failed');
  await page.waitForFunction(({failed, ok}) => {
    const ids = [...document.querySelectorAll('tr[data-execution-id]')].map((tr) => tr.dataset.executionId);
    return ids.includes(failed) && !ids.includes(ok);
  }, {failed: workflows.failedExecution, ok: workflows.redriveExecution}, {timeout: WAIT});
  assert.match(await page.evaluate(() => location.hash), /status=failed/);
  await shot('executions.png');
});

test('shows statistics as charts, and the circuits', async () => {
  await page.goto(`${base}/console#/statistics`);
  await see('main svg.chart', 'statistics charts');
  const label = await page.getAttribute('main svg.chart', 'aria-label');
  assert.match(label, /success 2/, label);
  await shot('statistics.png');

  await page.goto(`${base}/console#/circuits`);
  await see('main table', 'circuits');
  assert.match(await page.textContent('main'), /127\.0\.0\.1/);
  await shot('circuits.png');
  assert.doesNotMatch(serverOutput, /\[page error\]/, serverOutput);
});
