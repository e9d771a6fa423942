// Test-only: a webhook receiver that verifies every delivery with the Standard Webhooks reference
// library (npm `standardwebhooks`), as an integrator's receiver would.
//
//   node webhook-receiver.mjs        → prints "listening <port>" once it listens on 127.0.0.1
//
// POST /hook                 a delivery: verified against each secret set (any may match), recorded
// POST /control/secrets      {"secrets": ["whsec_…", …]}  the secrets to verify with
// POST /control/fail         {"status": 500, "count": N}  answer the next N deliveries (-1: all) with status
// POST /control/delay        {"ms": 50}                   wait before answering each delivery
// GET  /control/received     every delivery: {id, timestamp, signatures, verifiedWith, status, body, at}
import http from 'node:http';
import { Webhook } from 'standardwebhooks';

let secrets = [];
let fail = { status: 500, count: 0 };
let delayMs = 0;
const received = [];

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function json(res, status, value) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(value));
}

const server = http.createServer(async (req, res) => {
  try {
    const body = await readBody(req);
    if (req.method === 'POST' && req.url === '/hook') {
      const headers = {
        'webhook-id': req.headers['webhook-id'],
        'webhook-timestamp': req.headers['webhook-timestamp'],
        'webhook-signature': req.headers['webhook-signature'],
      };
      // Which of the known secrets verify this delivery (each on its own).
      const verifiedWith = [];
      secrets.forEach((secret, index) => {
        try {
          new Webhook(secret).verify(body, headers);
          verifiedWith.push(index);
        } catch {
          // not signed with this one
        }
      });
      let status = 204;
      if (fail.count !== 0) {
        status = fail.status;
        if (fail.count > 0) fail.count -= 1;
      }
      received.push({
        id: headers['webhook-id'] ?? null,
        timestamp: headers['webhook-timestamp'] ?? null,
        signatures: (headers['webhook-signature'] ?? '').split(' ').filter((s) => s).length,
        verifiedWith,
        status,
        body,
        at: Date.now(),
      });
      if (delayMs > 0) await new Promise((r) => setTimeout(r, delayMs));
      res.writeHead(status);
      res.end();
      return;
    }
    if (req.method === 'POST' && req.url === '/control/secrets') {
      secrets = JSON.parse(body).secrets;
      return json(res, 200, { ok: true });
    }
    if (req.method === 'POST' && req.url === '/control/fail') {
      fail = JSON.parse(body);
      return json(res, 200, { ok: true });
    }
    if (req.method === 'POST' && req.url === '/control/delay') {
      delayMs = JSON.parse(body).ms;
      return json(res, 200, { ok: true });
    }
    if (req.method === 'GET' && req.url === '/control/received') {
      return json(res, 200, received);
    }
    json(res, 404, { error: 'not found' });
  } catch (error) {
    json(res, 500, { error: String(error) });
  }
});

server.listen(0, '127.0.0.1', () => {
  console.log(`listening ${server.address().port}`);
});
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
