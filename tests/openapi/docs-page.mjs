// The real-browser check of the API's documentation page (`/v1/docs`): headless Chromium
// (playwright-core from tests/oidc) opens the page, waits for Swagger UI to render the
// operations of `/v1/openapi.json`, and records every request the page makes.
//
//   node tests/openapi/docs-page.mjs --url http://127.0.0.1:PORT/v1/docs
//
// Prints one JSON line and exits 0:
//   {"operations": <rendered operations>, "title": "…", "requests": ["http://…", …],
//    "failed": ["<url> <why>", …], "consoleErrors": ["…"]}
// Exit 1 (message on stderr) when the harness itself fails (chromium does not launch, the page
// never renders an operation within 30 s).
//
// Environment: `TTSCM_TEST_OIDC_DIR` (where playwright-core is installed, default tests/oidc
// beside this script), `TTSCM_TEST_CHROMIUM` (default /usr/bin/chromium).

import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const HERE = dirname(fileURLToPath(import.meta.url));
const oidcDir = process.env.TTSCM_TEST_OIDC_DIR || join(HERE, '..', 'oidc');
const { chromium } = createRequire(join(oidcDir, 'package.json'))('playwright-core');

const { values } = parseArgs({ options: { url: { type: 'string' } } });
if (!values.url) {
  console.error('usage: node docs-page.mjs --url http://127.0.0.1:PORT/v1/docs');
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: process.env.TTSCM_TEST_CHROMIUM || '/usr/bin/chromium',
  headless: true,
});
try {
  const page = await browser.newPage();
  const requests = [];
  const failed = [];
  const consoleErrors = [];
  page.on('request', (request) => requests.push(request.url()));
  page.on('requestfailed', (request) => failed.push(`${request.url()} ${request.failure()?.errorText}`));
  page.on('console', (message) => {
    if (message.type() === 'error') consoleErrors.push(message.text());
  });
  await page.goto(values.url, { waitUntil: 'load', timeout: 30_000 });
  await page.waitForSelector('.opblock', { timeout: 30_000 });
  await page.waitForLoadState('networkidle', { timeout: 30_000 });
  const operations = await page.locator('.opblock').count();
  const title = await page.locator('.info .title').first().innerText();
  console.log(JSON.stringify({ operations, title, requests, failed, consoleErrors }));
} finally {
  await browser.close();
}
