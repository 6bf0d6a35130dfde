// A real OpenID Provider on loopback for Drive's integration tests (panva/oidc-provider 9.x).
//
//   PORT=0 KEY_FILE=/tmp/x/key.json node test-idp.mjs
//
// Prints exactly one line, {"issuer":"http://127.0.0.1:NNNNN"}, on stdout once listening; exits
// on SIGTERM. Everything else (oidc-provider's notices included) goes to stderr.
//
// Env:
//   PORT              port on 127.0.0.1 (0, the default, picks a free one)
//   KEY_FILE          required: the RSA private signing key as a JWK with a `kid`. Created with a
//                     new key (and kid) when missing, loaded when present, so the kid survives
//                     restarts and a new file means a key rotation. Its PKCS#8 PEM is (re)written
//                     to KEY_FILE.pem on every start.
//   ACCESS_TOKEN_TTL  lifetime of access tokens in seconds (default 300)
//
// Clients: drive-cli (public, PKCE) and drive-web (secret drive-web-secret), both allowed the
// authorization_code, refresh_token and (test-only) password grants; drive-ui (public, PKCE),
// Drive's file browser, returning to http://127.0.0.1:<any port>/_drive/ui/callback. Users: alice, bob, carol,
// dave, erin, each with the password `<username>-pass`. Access tokens are RS256 JWTs for the
// resource `urn:drive` carrying Keycloak-like identity claims (groups, realm_access.roles).
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';

import { exportJWK, generateKeyPair } from 'jose';
import { Provider, errors } from 'oidc-provider';

// oidc-provider prints its notices with console.info; keep stdout for the issuer line alone.
console.info = (...args) => console.error(...args);

const RESOURCE = 'urn:drive';
const RESOURCE_SCOPE = 'drive';
const REDIRECT_URI = 'http://127.0.0.1/callback';
const OIDC_SCOPES = ['openid', 'offline_access', 'email', 'profile', 'groups', 'roles'];
const DEFAULT_SCOPE = 'openid email profile groups roles';
const GRANTS = ['authorization_code', 'refresh_token', 'password'];
const CLAIMS = ['sub', 'email', 'email_verified', 'preferred_username', 'name', 'groups', 'realm_access'];

function envSeconds(name, fallback) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n <= 0) fail(`${name} must be a positive whole number of seconds, not ${raw}`);
  return n;
}

function fail(message) {
  console.error(`test-idp: ${message}`);
  process.exit(2);
}

const ACCESS_TOKEN_TTL = envSeconds('ACCESS_TOKEN_TTL', 300);
const PORT = Number(process.env.PORT || 0);
if (!Number.isInteger(PORT) || PORT < 0 || PORT > 65535) fail(`PORT must be a port number, not ${process.env.PORT}`);
const KEY_FILE = process.env.KEY_FILE;
// More redirect URIs of the confidential `appstore` client (comma-separated), for an App
// Store under test whose port is known only when it starts.
const APP_REDIRECT_URIS = (process.env.APP_REDIRECT_URIS || '').split(',').filter(Boolean);
if (!KEY_FILE) fail('KEY_FILE is required (the signing key JWK, created when missing)');

// Static users. Subjects are stable UUIDs, like Keycloak's user ids.
const USERS = {
  alice: { sub: '00000000-0000-4000-8000-00000000a11c', name: 'Alice Example', groups: ['team-a'], roles: ['app-user'] },
  bob: { sub: '00000000-0000-4000-8000-000000000b0b', name: 'Bob Example', groups: ['team-a', 'team-b'], roles: ['app-user'] },
  carol: { sub: '00000000-0000-4000-8000-0000000ca201', name: 'Carol Example', groups: ['team-b'], roles: ['app-user', 'curator'] },
  dave: { sub: '00000000-0000-4000-8000-00000000da7e', name: 'Dave Example', groups: [], roles: ['drive-admin'] },
  erin: { sub: '00000000-0000-4000-8000-000000000e21', name: 'Erin Example', groups: [], roles: ['guest'] },
};
const BY_SUB = new Map(Object.entries(USERS).map(([username, u]) => [u.sub, { username, ...u }]));

// The user `username` if `password` is theirs.
function authenticate(username, password) {
  const u = Object.hasOwn(USERS, username) ? USERS[username] : undefined;
  return u && password === `${username}-pass` ? u : undefined;
}

// Identity claims of a user, shaped like Keycloak's (groups without a leading slash).
function identityClaims(u) {
  return {
    email: `${u.username}@example.test`,
    email_verified: true,
    preferred_username: u.username,
    name: u.name,
    groups: u.groups,
    realm_access: { roles: u.roles },
  };
}

// The account of subject `sub`, in oidc-provider's shape.
function account(sub) {
  const u = BY_SUB.get(sub);
  if (!u) return undefined;
  return { accountId: sub, claims: async () => ({ sub, ...identityClaims(u) }) };
}

// The signing key: loaded from KEY_FILE, or generated and written there.
async function signingKey() {
  let jwk;
  if (fs.existsSync(KEY_FILE)) {
    jwk = JSON.parse(fs.readFileSync(KEY_FILE, 'utf8'));
    if (jwk.kty !== 'RSA' || !jwk.d || !jwk.kid) fail(`${KEY_FILE} is not an RSA private JWK with a kid`);
  } else {
    const { privateKey } = await generateKeyPair('RS256', { extractable: true });
    jwk = { ...(await exportJWK(privateKey)), kid: crypto.randomUUID(), alg: 'RS256', use: 'sig' };
    fs.writeFileSync(KEY_FILE, `${JSON.stringify(jwk)}\n`, { mode: 0o600 });
  }
  const pem = crypto.createPrivateKey({ key: jwk, format: 'jwk' }).export({ type: 'pkcs8', format: 'pem' });
  fs.writeFileSync(`${KEY_FILE}.pem`, pem, { mode: 0o600 });
  const pub = crypto.createPublicKey({ key: jwk, format: 'jwk' }).export({ type: 'spki', format: 'pem' });
  fs.writeFileSync(`${KEY_FILE}.pub.pem`, pub);
  return jwk;
}

const resourceServerInfo = () => ({
  scope: RESOURCE_SCOPE,
  audience: RESOURCE,
  accessTokenFormat: 'jwt',
  accessTokenTTL: ACCESS_TOKEN_TTL,
  jwt: { sign: { alg: 'RS256' } },
});

const keys = [await signingKey()];
const server = http.createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(PORT, '127.0.0.1', resolve);
});
const issuer = `http://127.0.0.1:${server.address().port}`;
// An instance's callback URL holds its id, unknown in advance: the Wave client may return to
// any loopback `…/_auth/callback`.
const WAVE_CALLBACK = /^http:\/\/(127\.0\.0\.1|[0-9a-f-]+\.localhost)(:\d+)?\/([^?#]*\/)?_auth\/callback$/;
// Drive's file browser signs in as the public client drive-ui (PKCE) at a Drive on any
// loopback port.
const DRIVE_UI_CALLBACK = /^http:\/\/127\.0\.0\.1:\d+\/_drive\/ui\/callback$/;

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: 'drive-cli',
      token_endpoint_auth_method: 'none',
      grant_types: GRANTS,
      response_types: ['code'],
      redirect_uris: [REDIRECT_URI],
    },
    {
      client_id: 'appstore',
      client_secret: 'appstore-secret',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      redirect_uris: [REDIRECT_URI, ...APP_REDIRECT_URIS],
    },
    {
      client_id: 'drive-web',
      client_secret: 'drive-web-secret',
      grant_types: GRANTS,
      response_types: ['code'],
      redirect_uris: [REDIRECT_URI],
    },
    {
      client_id: 'drive-ui',
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      redirect_uris: [REDIRECT_URI],
    },
    {
      // The App Store's Wave client: waved signs users in to EnableOIDC apps with it, at
      // <instance>/_auth/callback (see redirectUriAllowed below), without PKCE.
      client_id: 'wave-app',
      client_secret: 'wave-app-secret',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      redirect_uris: [REDIRECT_URI],
    },
  ],
  // waved reads preferred_username from the ID token of the code flow.
  conformIdTokenClaims: false,
  jwks: { keys },
  cookies: { keys: ['drive-test-idp-cookies'] },
  scopes: OIDC_SCOPES,
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['preferred_username', 'name'],
    groups: ['groups'],
    roles: ['realm_access'],
  },
  findAccount: async (ctx, sub) => account(sub),
  features: {
    devInteractions: { enabled: false }, // our own /interaction below checks passwords
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => RESOURCE, // clients need not send resource=
      useGrantedResource: async () => true, // code exchange and refresh keep the JWT audience
      getResourceServerInfo: async () => resourceServerInfo(),
    },
  },
  // Keycloak-like access tokens: the identity claims travel in the JWT itself.
  async extraTokenClaims(ctx, token) {
    if (token.kind !== 'AccessToken') return undefined;
    const u = BY_SUB.get(token.accountId);
    return u ? { ...identityClaims(u), azp: token.clientId, typ: 'Bearer' } : undefined;
  },
  // Refresh tokens for every grant of a client allowed them, without offline_access.
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  expiresWithSession: async () => false,
  // First-party clients: no consent screen, everything is granted up front.
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
    grantEverything(grant);
    await grant.save();
    return grant;
  },
  pkce: { required: (ctx, client) => client.clientId !== 'wave-app' },
  ttl: {
    AccessToken: ACCESS_TOKEN_TTL,
    AuthorizationCode: 60,
    Grant: 86400,
    IdToken: 3600,
    Interaction: 600,
    RefreshToken: 86400,
    Session: 86400,
  },
});

function grantEverything(grant) {
  grant.addOIDCScope(OIDC_SCOPES.join(' '));
  grant.addOIDCClaims(CLAIMS);
  grant.addResourceScope(RESOURCE, RESOURCE_SCOPE);
}

// Test-only Resource Owner Password grant (Keycloak's "Direct Access Grants"). The refresh token
// it issues works with the stock refresh_token grant.
provider.registerGrantType('password', async (ctx) => {
  const { username, password } = ctx.oidc.params;
  if (!username || !password) throw new errors.InvalidRequest('username and password are required');
  const u = authenticate(username, password);
  if (!u) throw new errors.InvalidGrant('invalid user credentials');

  const requested = (ctx.oidc.params.scope || DEFAULT_SCOPE).split(' ').filter(Boolean);
  const unknown = requested.filter((s) => s !== RESOURCE_SCOPE && !OIDC_SCOPES.includes(s));
  if (unknown.length) throw new errors.InvalidScope('requested scope is not allowed', unknown.join(' '));
  const scope = [...new Set([...requested, RESOURCE_SCOPE])].join(' ');

  const { client } = ctx.oidc;
  const accountId = u.sub;
  const user = account(accountId);
  ctx.oidc.entity('Account', user);
  const grant = new provider.Grant({ accountId, clientId: client.clientId });
  grantEverything(grant);
  const grantId = await grant.save();

  const at = new provider.AccessToken({ accountId, client, grantId, gty: 'password', expiresWithSession: false });
  at.resourceServer = new provider.ResourceServer(RESOURCE, resourceServerInfo());
  at.scope = RESOURCE_SCOPE;
  ctx.oidc.entity('AccessToken', at);
  const accessToken = await at.save();

  const rt = new provider.RefreshToken({
    accountId,
    authTime: Math.floor(Date.now() / 1000),
    client,
    expiresWithSession: false,
    grantId,
    gty: 'password',
    resource: RESOURCE,
    rotations: 0,
    scope,
  });
  ctx.oidc.entity('RefreshToken', rt);
  const refreshToken = await rt.save();

  let idToken;
  if (requested.includes('openid')) {
    const token = new provider.IdToken({ ...(await user.claims()), auth_time: rt.authTime }, { ctx });
    token.scope = requested.filter((s) => OIDC_SCOPES.includes(s)).join(' ');
    idToken = await token.issue({ use: 'idtoken' });
  }

  ctx.body = {
    access_token: accessToken,
    expires_in: at.expiration,
    token_type: 'Bearer',
    refresh_token: refreshToken,
    id_token: idToken,
    scope,
  };
}, ['username', 'password', 'scope']);

// The login interaction: a form that checks passwords (consent is covered by loadExistingGrant).
const escapeHtml = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

async function readForm(req) {
  let body = '';
  for await (const chunk of req) body += chunk;
  return Object.fromEntries(new URLSearchParams(body));
}

function loginForm(res, uid, status, message) {
  res.statusCode = status;
  res.setHeader('content-type', 'text/html; charset=utf-8');
  res.setHeader('cache-control', 'no-store');
  res.end(`<!doctype html>
<html><head><title>Sign in</title></head><body>
${message ? `<p>${escapeHtml(message)}</p>` : ''}<form method="post" action="/interaction/${escapeHtml(uid)}/login">
<input name="username" autocomplete="username"> <input name="password" type="password" autocomplete="current-password">
<button type="submit">Sign in</button>
</form></body></html>
`);
}

async function interaction(req, res, match) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== match[1]) {
    res.statusCode = 400;
    res.end('interaction mismatch\n');
    return;
  }
  if (details.prompt.name !== 'login') {
    await provider.interactionFinished(req, res, {}, { mergeWithLastSubmission: true });
    return;
  }
  if (match[2] && req.method === 'POST') {
    const { username, password } = await readForm(req);
    const u = authenticate(username, password);
    if (!u) {
      loginForm(res, details.uid, 401, 'Invalid username or password.');
      return;
    }
    await provider.interactionFinished(req, res, { login: { accountId: u.sub } }, { mergeWithLastSubmission: false });
    return;
  }
  loginForm(res, details.uid, 200);
}

const redirectUriAllowed = provider.Client.prototype.redirectUriAllowed;
provider.Client.prototype.redirectUriAllowed = function (value) {
  if (this.clientId === 'wave-app') return WAVE_CALLBACK.test(value);
  if (this.clientId === 'drive-ui') return DRIVE_UI_CALLBACK.test(value);
  return redirectUriAllowed.call(this, value);
};
const callback = provider.callback();
server.on('request', async (req, res) => {
  const match = new URL(req.url, issuer).pathname.match(/^\/interaction\/([^/]+)(\/login)?$/);
  if (!match) {
    callback(req, res);
    return;
  }
  try {
    await interaction(req, res, match);
  } catch (e) {
    if (!res.headersSent) {
      res.statusCode = e.statusCode || 500;
      res.setHeader('content-type', 'text/plain; charset=utf-8');
    }
    res.end(`${e.name}: ${e.error_description || e.message}\n`);
  }
});

for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => process.exit(0));
process.stdout.write(`${JSON.stringify({ issuer })}\n`);
