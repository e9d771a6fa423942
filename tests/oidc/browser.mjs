// The real-browser check of TTSCM's sign-in popup (playwright-core driving Debian's chromium).
//
//   node browser.mjs --edge http://127.0.0.1:PORT --login alice --screenshot-dir DIR [--app-origin URL]
//   node browser.mjs --self-test [--screenshot-dir DIR]
//
// With `--app-origin http://127.0.0.1:PORT2` the opener page is a web app on that other origin
// (served here): it asks for an opener-bound sign-in (`/v1/auth/uri?binding=opener`, a CORS
// request), and passes the completion code the edge's redirect page posts to it on to the socket.
//
// Against an edge it does what the web app does: from a page on the edge's origin it fetches
// `/v1/auth/uri`, opens the WebSocket `/v1/auth/ws?callbackKey=…`, waits for `waiting`, and opens
// the authorize URI in a popup. In the popup it signs in on the OpenID provider (provider.mjs: login
// form, then consent), then waits for the popup to close itself (the edge's redirect page does that
// by script) and for the opener's WebSocket message. Finally it opens
// `/v1/auth/redirect?state=unknownstate&code=x` in a second page and takes a screenshot of that
// error page (`DIR/auth-redirect-error.png`).
//
// It prints one JSON line to stdout and exits 0:
//   {"popupClosed":bool,"message":<first WebSocket message after "waiting", or null>,
//    "errorPageText":"…","screenshot":"DIR/auth-redirect-error.png",
//    "errorPageStatus":<HTTP status>,"popupLastUrl":"…","error":<what went wrong in the flow, or null>}
// Exit 1 (message on stderr) only when the harness itself fails, e.g. chromium does not launch.
//
// `--self-test` runs the same check against a stand-in edge started here (provider.mjs as the
// OpenID provider, a tiny HTTP + WebSocket server speaking the edge's contract), checks the
// result, and exits 0 when it holds.
//
// Environment: `TTSCM_TEST_CHROMIUM` (default /usr/bin/chromium).

import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { chromium } from 'playwright-core';

const HERE = dirname(fileURLToPath(import.meta.url));
const STEP_TIMEOUT_MS = 20_000;
const POPUP_FEATURES = 'popup,width=500,height=600';

/** Runs the check against `edge`; answers the result object (see the header). */
export async function check({ edge, login, screenshotDir, appOrigin }) {
  const browser = await chromium.launch({
    executablePath: process.env.TTSCM_TEST_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox'],
  });
  const result = {
    popupClosed: false,
    message: null,
    errorPageText: '',
    screenshot: join(screenshotDir, 'auth-redirect-error.png'),
    errorPageStatus: null,
    popupLastUrl: null,
    error: null,
  };
  try {
    const context = await browser.newContext();
    // Only loopback exists here; fail anything else at once (the provider's page imports a web font).
    await context.route(
      (url) => !['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname),
      (route) => route.abort('blockedbyclient'),
    );
    context.setDefaultTimeout(STEP_TIMEOUT_MS);

    const app = appOrigin ? await serveAppPage(appOrigin) : null;
    try {
      await signInThroughPopup(context, edge, login, result, appOrigin);
    } catch (err) {
      result.error = String(err?.message ?? err).split('\n')[0];
    } finally {
      app?.close();
      app?.closeAllConnections();
    }

    // The error page, kept open for the screenshot even if it closes itself by script.
    const page = await context.newPage();
    await page.setViewportSize({ width: 500, height: 600 });
    await page.addInitScript(() => {
      window.close = () => {};
    });
    const response = await page.goto(`${edge}/v1/auth/redirect?state=unknownstate&code=x`, {
      waitUntil: 'load',
    });
    result.errorPageStatus = response?.status() ?? null;
    result.errorPageText = await page.evaluate(() => document.body?.innerText ?? '');
    mkdirSync(screenshotDir, { recursive: true });
    await page.screenshot({ path: result.screenshot, fullPage: true });
  } finally {
    await browser.close();
  }
  return result;
}

/** A blank page of the web app at `origin` (`http://127.0.0.1:PORT`); answers the server. */
async function serveAppPage(origin) {
  const server = createServer((_, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end('<!doctype html><title>An MSP web app</title><p>app</p>');
  });
  const { hostname, port } = new URL(origin);
  await new Promise((listening) => server.listen(Number(port), hostname, listening));
  return server;
}

/** The popup sign-in as the web app does it; fills `result.popupClosed`, `.message`, `.popupLastUrl`. */
async function signInThroughPopup(context, edge, login, result, appOrigin) {
  const opener = await context.newPage();
  await opener.goto(appOrigin ? `${appOrigin}/` : `${edge}/healthz`);

  const popupEvent = opener.waitForEvent('popup', { timeout: STEP_TIMEOUT_MS });
  popupEvent.catch(() => {}); // awaited below; a failure before then is reported by its own step
  await opener.evaluate(openPopup, {
    features: POPUP_FEATURES,
    timeoutMs: STEP_TIMEOUT_MS,
    edge: appOrigin ? edge : null,
  });
  const popup = await popupEvent;
  const closed = new Promise((done) => popup.once('close', done));
  popup.on('framenavigated', (frame) => {
    if (frame === popup.mainFrame()) result.popupLastUrl = frame.url();
  });

  try {
    // Login form of oidc-provider's development interactions (any login, any password).
    const loginForm = popup.locator('form:has(input[name="prompt"][value="login"])');
    await loginForm.locator('input[name="login"]').fill(login);
    await loginForm.locator('input[name="password"]').fill('x');
    await loginForm.locator('button[type="submit"]').click();
    // Then the consent form; submitting it ends at the edge's redirect page, which closes the popup.
    await popup.locator('form:has(input[name="prompt"][value="consent"]) button[type="submit"]').click();
  } catch (err) {
    if (!popup.isClosed()) throw err;
  }

  const timedOut = Symbol('timed out');
  const outcome = await Promise.race([closed, delay(STEP_TIMEOUT_MS).then(() => timedOut)]);
  result.popupClosed = outcome !== timedOut;

  await opener
    .waitForFunction(() => window.__ttscm.message !== null || window.__ttscm.closed !== null, null, {
      timeout: STEP_TIMEOUT_MS,
    })
    .catch(() => {});
  const state = await opener.evaluate(() => window.__ttscm);
  result.message = state.message;
  if (!result.popupClosed) {
    throw new Error(`the popup did not close within ${STEP_TIMEOUT_MS} ms (at ${result.popupLastUrl})`);
  }
  if (state.message === null) {
    throw new Error(`no WebSocket message after "waiting" (socket ${JSON.stringify(state.closed)})`);
  }
}

/**
 * Runs in the opener page: fetch the authorize URI, open the WebSocket, wait for `waiting`, open the
 * popup. Later messages land in `window.__ttscm`. With `edge` (a page on another origin), the
 * sign-in is opener-bound: the code the edge's redirect page posts here goes to the socket.
 */
async function openPopup({ features, timeoutMs, edge }) {
  const state = { message: null, closed: null };
  window.__ttscm = state;

  const base = edge ?? location.origin;
  const response = await fetch(`${base}/v1/auth/uri${edge ? '?binding=opener' : ''}`, {
    headers: { accept: 'application/json' },
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`GET /v1/auth/uri answered ${response.status}: ${text.slice(0, 300)}`);
  const { uri, callbackKey } = JSON.parse(text).data ?? {};
  if (!uri || !callbackKey) throw new Error(`GET /v1/auth/uri answered no uri/callbackKey: ${text.slice(0, 300)}`);

  const wsUrl = new URL(`/v1/auth/ws?callbackKey=${encodeURIComponent(callbackKey)}`, base);
  wsUrl.protocol = wsUrl.protocol === 'https:' ? 'wss:' : 'ws:';
  const socket = new WebSocket(wsUrl);
  await new Promise((waiting, failed) => {
    const timer = setTimeout(() => failed(new Error(`no "waiting" on the WebSocket within ${timeoutMs} ms`)), timeoutMs);
    socket.onmessage = (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        message = { unparsed: String(event.data) };
      }
      if (message.type === 'waiting') {
        clearTimeout(timer);
        waiting();
      } else if (message.type === 'code_required') {
        // The completion code arrives from the popup (see the listener below).
      } else if (state.message === null) {
        state.message = message;
      }
    };
    window.addEventListener('message', (event) => {
      if (event.origin === base && event.data?.type === 'ttscm-sign-in-code') {
        socket.send(JSON.stringify({ code: event.data.code }));
      }
    });
    socket.onclose = (event) => {
      state.closed = { code: event.code, reason: event.reason };
      failed(new Error(`the WebSocket closed (${event.code} ${event.reason}) before "waiting"`));
    };
  });

  if (window.open(uri, 'ttscm-sign-in', features) === null) throw new Error('window.open was blocked');
}

function delay(ms) {
  return new Promise((done) => setTimeout(done, ms).unref());
}

// ---- self-test: provider.mjs plus a stand-in edge --------------------------------------------

const CLIENT_ID = 'ttscm-test';
const CLIENT_SECRET = 'ttscm-test-secret';

async function selfTest(screenshotDir) {
  const edge = await startStandInEdge();
  const provider = await startProvider(`${edge.url}/v1/auth/redirect`);
  edge.issuer = provider.issuer;
  try {
    const result = await check({ edge: edge.url, login: 'alice', screenshotDir });
    const problems = [];
    if (result.error) problems.push(`error: ${result.error}`);
    if (!result.popupClosed) problems.push('the popup did not close');
    if (result.message?.type !== 'authenticated') problems.push('no "authenticated" message');
    if (result.message?.user?.email !== 'alice@contoso.example') problems.push('wrong user');
    if (result.errorPageStatus !== 400 || !/can close this window/.test(result.errorPageText)) {
      problems.push('unexpected error page');
    }
    return { result, problems };
  } finally {
    provider.child.kill();
    edge.server.close();
    edge.server.closeAllConnections();
  }
}

/** Starts provider.mjs for `redirectUri`; answers `{ issuer, child }`. */
async function startProvider(redirectUri) {
  const child = spawn(process.execPath, [join(HERE, 'provider.mjs')], {
    env: {
      ...process.env,
      OIDC_PORT: '0',
      OIDC_REDIRECT_URIS: redirectUri,
      OIDC_CLIENT_ID: CLIENT_ID,
      OIDC_CLIENT_SECRET: CLIENT_SECRET,
    },
    stdio: ['pipe', 'pipe', 'ignore'],
  });
  const [line] = await Promise.race([
    new Promise((done) => createInterface({ input: child.stdout }).once('line', (l) => done([l]))),
    delay(10_000).then(() => [null]),
  ]);
  if (!line) throw new Error('provider.mjs did not print its issuer within 10 s');
  return { issuer: JSON.parse(line).issuer, child };
}

/**
 * A stand-in for the edge's sign-in routes, speaking the same contract: `/healthz`,
 * `/v1/auth/uri`, the `/v1/auth/ws` WebSocket and `/v1/auth/redirect` (code exchange, ID token
 * claims to the waiting socket, a page that closes its window).
 */
async function startStandInEdge() {
  const pending = new Map(); // state → { callbackKey, verifier, nonce }
  const sockets = new Map(); // callbackKey → socket
  const edge = { url: '', issuer: '', server: createServer() };

  edge.server.on('request', async (req, res) => {
    const url = new URL(req.url, edge.url);
    try {
      if (url.pathname === '/healthz') {
        res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
      } else if (url.pathname === '/v1/auth/uri') {
        const state = b64url(randomBytes(16));
        const nonce = b64url(randomBytes(16));
        const verifier = b64url(randomBytes(32));
        const callbackKey = b64url(randomBytes(16));
        pending.set(state, { callbackKey, verifier, nonce });
        const authorize = new URL('/auth', edge.issuer);
        authorize.search = new URLSearchParams({
          client_id: CLIENT_ID,
          response_type: 'code',
          scope: 'openid profile email',
          redirect_uri: `${edge.url}/v1/auth/redirect`,
          state,
          nonce,
          code_challenge: b64url(createHash('sha256').update(verifier).digest()),
          code_challenge_method: 'S256',
        }).toString();
        const body = { status: 200, message: 'Successfully fetch Auth URI', data: { uri: authorize.href, callbackKey }, successful: true };
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
      } else if (url.pathname === '/v1/auth/redirect') {
        const flow = pending.get(url.searchParams.get('state'));
        pending.delete(url.searchParams.get('state'));
        if (!flow) {
          res.writeHead(400, { 'content-type': 'text/html' }).end(closingPage('Sign-in failed: the sign-in request is unknown or has expired.'));
          return;
        }
        const token = await fetch(new URL('/token', edge.issuer), {
          method: 'POST',
          body: new URLSearchParams({
            grant_type: 'authorization_code',
            code: url.searchParams.get('code') ?? '',
            redirect_uri: `${edge.url}/v1/auth/redirect`,
            client_id: CLIENT_ID,
            client_secret: CLIENT_SECRET,
            code_verifier: flow.verifier,
          }),
        }).then((r) => r.json());
        const claims = JSON.parse(Buffer.from(token.id_token.split('.')[1], 'base64url'));
        const socket = sockets.get(flow.callbackKey);
        const message = claims.nonce === flow.nonce
          ? {
              type: 'authenticated',
              accessToken: 'stand-in',
              refreshToken: 'stand-in',
              tokenType: 'Bearer',
              expiresIn: 900,
              user: { name: claims.name, email: claims.email ?? claims.preferred_username, oid: claims.oid },
            }
          : { type: 'error', status: 401, message: 'nonce mismatch' };
        if (socket) {
          wsSend(socket, JSON.stringify(message));
          wsClose(socket);
        }
        res.writeHead(200, { 'content-type': 'text/html' }).end(closingPage('Signed in.'));
      } else {
        res.writeHead(404).end();
      }
    } catch (err) {
      res.writeHead(500, { 'content-type': 'text/plain' }).end(String(err));
    }
  });

  // A minimal server side of RFC 6455: handshake, unmasked text and close frames, input ignored.
  edge.server.on('upgrade', (req, socket) => {
    const url = new URL(req.url, edge.url);
    const callbackKey = url.searchParams.get('callbackKey');
    if (url.pathname !== '/v1/auth/ws' || !callbackKey) {
      socket.destroy();
      return;
    }
    const accept = createHash('sha1')
      .update(`${req.headers['sec-websocket-key']}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`)
      .digest('base64');
    socket.write(
      `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`,
    );
    socket.on('error', () => {});
    socket.on('data', () => {});
    sockets.set(callbackKey, socket);
    wsSend(socket, JSON.stringify({ type: 'waiting', callbackKey }));
  });

  await new Promise((done) => edge.server.listen(0, '127.0.0.1', done));
  edge.url = `http://127.0.0.1:${edge.server.address().port}`;
  return edge;
}

function closingPage(text) {
  return `<!doctype html><title>TTSCM sign-in</title><p>${text} You can close this window.</p><script>window.close()</script>`;
}

function wsFrame(opcode, payload) {
  const length = payload.length;
  const header = length < 126 ? Buffer.from([0x80 | opcode, length]) : Buffer.from([0x80 | opcode, 126, length >> 8, length & 0xff]);
  return Buffer.concat([header, payload]);
}

function wsSend(socket, text) {
  socket.write(wsFrame(0x1, Buffer.from(text)));
}

function wsClose(socket) {
  socket.end(wsFrame(0x8, Buffer.from([0x03, 0xe8])));
}

function b64url(bytes) {
  return Buffer.from(bytes).toString('base64url');
}

// ---- command line ------------------------------------------------------------------------------

async function main() {
  const { values } = parseArgs({
    options: {
      edge: { type: 'string' },
      login: { type: 'string', default: 'alice' },
      'screenshot-dir': { type: 'string' },
      'self-test': { type: 'boolean', default: false },
      'app-origin': { type: 'string' },
    },
  });
  if (values['self-test']) {
    const dir = resolve(values['screenshot-dir'] ?? mkdtempSync(join(tmpdir(), 'ttscm-browser-')));
    const { result, problems } = await selfTest(dir);
    process.stdout.write(`${JSON.stringify(result)}\n`);
    if (problems.length > 0) {
      console.error(`self-test failed: ${problems.join('; ')}`);
      return 1;
    }
    console.error('self-test passed');
    return 0;
  }
  if (!values.edge || !values['screenshot-dir']) {
    console.error('usage: node browser.mjs --edge URL [--login NAME] --screenshot-dir DIR | --self-test');
    return 2;
  }
  const edge = values.edge.replace(/\/+$/, '');
  const result = await check({
    edge,
    login: values.login,
    screenshotDir: resolve(values['screenshot-dir']),
    appOrigin: values['app-origin'],
  });
  process.stdout.write(`${JSON.stringify(result)}\n`);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(`browser.mjs: ${err?.stack ?? err}`);
    process.exit(1);
  },
);
