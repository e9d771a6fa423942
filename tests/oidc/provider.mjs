// A real OpenID provider for tests (npm `oidc-provider` 8.x) that issues Microsoft-Entra-shaped
// ID tokens: `oid`, `tid`, `name`, `preferred_username` and `email` in the ID token itself.
//
//   OIDC_PORT=0 OIDC_REDIRECT_URIS=http://127.0.0.1:8080/v1/auth/redirect \
//   OIDC_CLIENT_ID=ttscm-test OIDC_CLIENT_SECRET=ttscm-test-secret node provider.mjs
//
// Listens on 127.0.0.1 (`OIDC_PORT` 0 = any free port); the issuer is `http://127.0.0.1:<port>`.
// Once listening it prints exactly one line to stdout, `{"issuer":"http://127.0.0.1:<port>"}`;
// everything else (the library's notices and warnings) goes to stderr. It exits when its stdin
// reaches end of file, so a test process that dies without killing it does not leave it behind.
//
// Sign-in uses the library's development interactions: a login form (`login`, `password`; any
// login name with any password) and a consent form. The login name is the account id.
// A login starting with `noemail` gets no `email` claim (the relying party must fall back to
// `preferred_username`).

import { createHash, generateKeyPairSync } from 'node:crypto';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';

/** The fixed tenant of every account (`TEST_TENANT` in the Rust fixture). */
const TENANT = '11111111-2222-3333-4444-555555555555';
const DOMAIN = 'contoso.example';

// The library prints notices with console.info; stdout carries only the issuer line.
console.info = console.error;
console.log = console.error;

function env(name, fallback) {
  const value = process.env[name] ?? fallback;
  if (value === undefined || value === '') {
    console.error(`provider.mjs: ${name} is required`);
    process.exit(2);
  }
  return value;
}

const port = Number(env('OIDC_PORT', '0'));
const redirectUris = env('OIDC_REDIRECT_URIS')
  .split(',')
  .map((uri) => uri.trim())
  .filter(Boolean);
const clientId = env('OIDC_CLIENT_ID');
const clientSecret = env('OIDC_CLIENT_SECRET');

/**
 * A deterministic object id for a login name, shaped like Entra's `oid`: an RFC 9562 version-8
 * UUID from the first 16 bytes of SHA-256("oid:" + login) (`object_id` in the Rust fixture).
 */
function objectId(login) {
  const b = createHash('sha256').update(`oid:${login}`).digest().subarray(0, 16);
  b[6] = (b[6] & 0x0f) | 0x80;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = b.toString('hex');
  return [hex.slice(0, 8), hex.slice(8, 12), hex.slice(12, 16), hex.slice(16, 20), hex.slice(20)].join('-');
}

/** The Entra-like claims of the account `login`. */
function claimsOf(login) {
  const claims = {
    sub: login,
    oid: objectId(login),
    tid: TENANT,
    name: login.charAt(0).toUpperCase() + login.slice(1),
    preferred_username: `${login}@${DOMAIN}`,
  };
  if (!login.startsWith('noemail')) {
    claims.email = `${login}@${DOMAIN}`;
  }
  return claims;
}

// Listen first (the port may be 0), then build the provider for the issuer that port gives.
const server = createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(port, '127.0.0.1', () => {
    server.off('error', reject);
    resolve();
  });
});
const issuer = `http://127.0.0.1:${server.address().port}`;

// A fresh RS256 signing key per process (no "development-only keys" warning, no key files).
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: 'test-rs256', alg: 'RS256', use: 'sig' };

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: clientId,
      client_secret: clientSecret,
      redirect_uris: redirectUris,
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_post',
    },
  ],
  pkce: { required: () => true, methods: ['S256'] },
  scopes: ['openid', 'profile', 'email'],
  claims: {
    openid: ['sub', 'tid'],
    profile: ['name', 'preferred_username', 'oid'],
    email: ['email'],
  },
  // Scope-derived claims go into the ID token too, as Entra's do.
  conformIdTokenClaims: false,
  cookies: { keys: ['ttscm-test-oidc-cookie-key-1', 'ttscm-test-oidc-cookie-key-2'] },
  jwks: { keys: [signingKey] },
  features: { devInteractions: { enabled: true } },
  ttl: {
    AccessToken: 3600,
    AuthorizationCode: 600,
    IdToken: 3600,
    Interaction: 3600,
    Session: 86400,
    Grant: 86400,
  },
  async findAccount(_ctx, id) {
    return {
      accountId: id,
      async claims() {
        return claimsOf(id);
      },
    };
  },
});

// Entra accepts `prompt=select_account`; this provider has no account picker (and every
// sign-in shows the login form anyway), so the value is dropped instead of rejected.
provider.use(async (ctx, next) => {
  if (ctx.path === '/auth' && typeof ctx.query.prompt === 'string' && ctx.query.prompt.includes('select_account')) {
    const prompt = ctx.query.prompt.split(' ').filter((p) => p && p !== 'select_account').join(' ');
    const { prompt: _dropped, ...rest } = ctx.query;
    ctx.query = prompt ? { ...rest, prompt } : rest;
  }
  await next();
});

server.on('request', provider.callback());
server.on('error', (err) => console.error(`provider.mjs: ${err.stack ?? err}`));

process.stdout.write(`${JSON.stringify({ issuer })}\n`);

// Stop when the parent goes away (stdin closed) or asks politely. OIDC_WATCH_STDIN=0 turns the
// stdin watch off for callers that start it in the background (bench/run.sh) and stop it by pid.
function stop() {
  server.close(() => process.exit(0));
  server.closeAllConnections();
}
if (!process.stdin.isTTY && process.env.OIDC_WATCH_STDIN !== '0') {
  process.stdin.on('end', stop);
  process.stdin.on('error', stop);
  process.stdin.resume();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
