// A real OpenID provider for vandamme-oauth's integration tests (loopback only).
//
// Started by the pytest fixture in tests/integration/conftest.py. It prints one JSON line
// {"issuer": ...} on stdout once it listens, and exposes two test-only endpoints:
//   GET  /__test__/stats   counts of token-endpoint grants and revocations seen
//   POST /__test__/config  {"token_latency_ms": N} delays token requests before they are
//                          processed; {"token_response_delay_ms": N} delays the answer after
//   GET  /__test__/wait?counter=NAME&after=N  answers once stats[NAME] exceeds N
// Configuration comes from the environment:
//   ACCESS_TOKEN_TTL   access-token lifetime in seconds (default 60)
//   CLIENT_ID          the public native client's id (default "vandamme-test"); the
//                      confidential ones are CLIENT_ID-basic and CLIENT_ID-post
//   CLIENT_SECRET      their secret
//   RESOURCE_SCOPES    the scopes of every protected resource (default "files:read files:write")
//   CLIENT_ID_METADATA_DOCUMENTS  "1": accept Client ID Metadata Documents (an https client
//                      id whose document the provider fetches; on loopback too, for tests:
//                      start node with NODE_EXTRA_CA_CERTS naming the tests' CA)
import { createServer } from 'node:http';

import Provider from 'oidc-provider';

const clientId = process.env.CLIENT_ID || 'vandamme-test';
const clientSecret = process.env.CLIENT_SECRET || 'vandamme-test-secret: not/so+secret';
const accessTokenTtl = Number(process.env.ACCESS_TOKEN_TTL || '60');
const resourceScopes = process.env.RESOURCE_SCOPES || 'files:read files:write';
const metadataDocuments = process.env.CLIENT_ID_METADATA_DOCUMENTS === '1';

const stats = {
  authorization_code: 0, refresh_token: 0, device_code: 0, revocation: 0, token_errors: 0,
  token_requests_started: 0, token_requests_processed: 0,
};
let tokenLatencyMs = 0;
let tokenResponseDelayMs = 0;
// Long-poll waiters of GET /__test__/wait?counter=NAME&after=N.
let waiters = [];
function bump(counter) {
  stats[counter] += 1;
  const ready = waiters.filter((w) => stats[w.counter] > w.after);
  waiters = waiters.filter((w) => stats[w.counter] <= w.after);
  ready.forEach((w) => w.resolve());
}

const server = createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const { port } = server.address();
const issuer = `http://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: clientId,
      application_type: 'native',
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:device_code'],
      response_types: ['code'],
      // Native loopback redirects: any port is accepted (RFC 8252 section 7.3).
      redirect_uris: ['http://127.0.0.1/auth/callback', 'http://[::1]/auth/callback', 'http://localhost/auth/callback'],
    },
    // Confidential clients beside the public one: the same grants, with a client secret
    // sent by HTTP Basic or in the form.
    ...['client_secret_basic', 'client_secret_post'].map((method) => ({
      client_id: `${clientId}-${method === 'client_secret_basic' ? 'basic' : 'post'}`,
      client_secret: clientSecret,
      application_type: 'native',
      token_endpoint_auth_method: method,
      grant_types: ['authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:device_code'],
      response_types: ['code'],
      redirect_uris: ['http://127.0.0.1/auth/callback', 'http://[::1]/auth/callback', 'http://localhost/auth/callback'],
    })),
  ],
  scopes: ['openid', 'offline_access', 'profile', 'email'],
  claims: { openid: ['sub'], email: ['email', 'email_verified'] },
  async findAccount(_ctx, sub) {
    return {
      accountId: sub,
      async claims() {
        return { sub, email: `${sub}@example.test`, email_verified: true };
      },
    };
  },
  features: {
    devInteractions: { enabled: true },
    deviceFlow: { enabled: true },
    revocation: { enabled: true },
    // RFC 7591 dynamic registration, open (no initial access token), with RFC 7592
    // management so that a test can delete a client (a server that forgot it).
    registration: { enabled: true },
    registrationManagement: { enabled: true },
    // Client ID Metadata Documents (draft-02), only when asked for: the default provider
    // does not advertise them, so that a test can see registration taken instead.
    clientIdMetadataDocument: { enabled: metadataDocuments, ack: 'draft-02' },
    // RFC 8707: a token asked for with resource=R is a JWT whose aud is R, carrying the
    // resource's scopes (RESOURCE_SCOPES) that were asked for.
    resourceIndicators: {
      enabled: true,
      defaultResource: async (_ctx, _client, oneOf) => oneOf,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (_ctx, resourceIndicator) => ({
        scope: resourceScopes,
        audience: resourceIndicator,
        accessTokenTTL: accessTokenTtl,
        accessTokenFormat: 'jwt',
      }),
    },
  },
  // Issue a refresh token to every client allowed the grant; public clients rotate them
  // (oidc-provider's default), and presenting a used one revokes the whole grant.
  async issueRefreshToken(_ctx, client) {
    return client.grantTypeAllowed('refresh_token');
  },
  pkce: { required: () => true },
  ttl: {
    AccessToken: accessTokenTtl,
    AuthorizationCode: 60,
    DeviceCode: 600,
    Grant: 3600,
    IdToken: 3600,
    Interaction: 600,
    RefreshToken: 86400,
    Session: 3600,
  },
  cookies: { keys: ['vandamme-test-cookie-key'] },
  // The provider refuses to fetch documents from special-use addresses (its SSRF guard);
  // the tests serve client metadata documents on 127.0.0.1, so that guard is left out.
  fetch: (url, options) => {
    const { dispatcher, ...rest } = options;
    return globalThis.fetch(url, metadataDocuments ? rest : options);
  },
  // Put the email claims in the ID token too (the library reads the email from it).
  conformIdTokenClaims: false,
});

provider.on('grant.error', () => { stats.token_errors += 1; });
// Device codes ask to be polled every second (RFC 8628's `interval`; without one, clients wait
// 5 s between polls): the CLI's device logins in the tests wait through real polls.
provider.on('device_authorization.success', (ctx, body) => { body.interval = 1; });

// Test-only endpoints and token-endpoint instrumentation, mounted before the provider's routes.
provider.use(async (ctx, next) => {
  if (ctx.path === '/__test__/stats') {
    ctx.body = { ...stats };
    return;
  }
  if (ctx.path === '/__test__/config' && ctx.method === 'POST') {
    const chunks = [];
    for await (const chunk of ctx.req) chunks.push(chunk);
    const body = JSON.parse(Buffer.concat(chunks).toString() || '{}');
    if (typeof body.token_latency_ms === 'number') tokenLatencyMs = body.token_latency_ms;
    if (typeof body.token_response_delay_ms === 'number') {
      tokenResponseDelayMs = body.token_response_delay_ms;
    }
    ctx.body = { token_latency_ms: tokenLatencyMs, token_response_delay_ms: tokenResponseDelayMs };
    return;
  }
  if (ctx.path === '/__test__/wait') {
    const counter = String(ctx.query.counter);
    const after = Number(ctx.query.after || '0');
    if (!(counter in stats)) ctx.throw(400, 'unknown counter');
    if (stats[counter] <= after) {
      await new Promise((resolve) => { waiters.push({ counter, after, resolve }); });
    }
    ctx.body = { [counter]: stats[counter] };
    return;
  }
  if (ctx.path === '/token' && ctx.method === 'POST') {
    bump('token_requests_started');
    if (tokenLatencyMs > 0) {
      await new Promise((r) => setTimeout(r, tokenLatencyMs));
      // A client that vanished during the delay never gets its request processed (as when a
      // process dies before its request reaches the server): deterministic for the tests.
      if (ctx.req.socket.destroyed) {
        ctx.status = 499;
        return;
      }
    }
    await next();
    const grant = ctx.oidc?.params?.grant_type;
    if (ctx.status === 200) {
      if (grant === 'authorization_code') stats.authorization_code += 1;
      else if (grant === 'refresh_token') stats.refresh_token += 1;
      else if (grant === 'urn:ietf:params:oauth:grant-type:device_code') stats.device_code += 1;
    }
    bump('token_requests_processed');
    if (tokenResponseDelayMs > 0) await new Promise((r) => setTimeout(r, tokenResponseDelayMs));
    return;
  }
  if (ctx.path === '/token/revocation' && ctx.method === 'POST') {
    await next();
    if (ctx.status === 200) stats.revocation += 1;
    return;
  }
  await next();
});

server.on('request', provider.callback());
process.stdout.write(`${JSON.stringify({ issuer })}\n`);

const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
