// A real, certified OpenID provider (panva's oidc-provider) for tests/oidc_interop.rs.
//
// Listens on 127.0.0.1, on the port given by --port (0 by default: a free one), and prints one
// JSON line {"port": N, "issuer": "..."} on stdout once it accepts. It issues client-credentials
// access tokens as JWTs (RFC 9068, `typ: at+jwt`) for one resource indicator, signed RS256
// with keys it generates at start. Test-only control routes, outside the provider:
//   POST /__test/keys?set=A|BA|B   publish keys A, B+A (B signs) or B only: a rotation
//   POST /__test/down              every other request has its connection reset
//   POST /__test/up                serve again
// Environment: JB_RESOURCE (the resource indicator = the gateway's audience), JB_USER_ID (the
// JourneyBee userId put in the `journeybee_user_id` claim).
import { generateKeyPairSync } from 'node:crypto';
import http from 'node:http';
import Provider from 'oidc-provider';

const args = process.argv.slice(2);
const port = Number(args.includes('--port') ? args[args.indexOf('--port') + 1] : 0);
let down = args.includes('--down');
const resource = process.env.JB_RESOURCE || 'https://journeybee-gateway.test/api';
const userId = Number(process.env.JB_USER_ID || 457);

function rsaKey(kid) {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' };
}
const keys = { A: rsaKey('key-A'), B: rsaKey('key-B') };

let provider;
function build(issuer, set) {
  const p = new Provider(issuer, {
    clients: [
      {
        client_id: 'crm-sync',
        client_secret: 'crm-sync-secret-0123456789abcdef0123456789',
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
        token_endpoint_auth_method: 'client_secret_basic',
      },
    ],
    // The first key signs; the others are published for tokens signed before a rotation.
    jwks: { keys: [...set].map((name) => keys[name]) },
    scopes: ['partnerships:read', 'partnerships:write'],
    // No browser flows here; a fixed key keeps the provider from warning about it.
    cookies: { keys: ['oidc-interop-test-only-cookie-key'] },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: async () => resource,
        useGrantedResource: async () => true,
        getResourceServerInfo: async (ctx, indicator) => {
          if (indicator !== resource) {
            throw new Error(`unknown resource ${indicator}`);
          }
          return {
            scope: 'partnerships:read partnerships:write',
            audience: resource,
            accessTokenTTL: 600,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
    extraTokenClaims: async () => ({ journeybee_user_id: userId }),
  });
  return p;
}

let issuer;
const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://localhost');
  if (req.method === 'POST' && url.pathname.startsWith('/__test/')) {
    const what = url.pathname.slice('/__test/'.length);
    if (what === 'down') {
      down = true;
    } else if (what === 'up') {
      down = false;
    } else if (what === 'keys' && ['A', 'BA', 'B'].includes(url.searchParams.get('set'))) {
      provider = build(issuer, url.searchParams.get('set'));
    } else {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(204).end();
    return;
  }
  if (down) {
    req.socket.destroy();
    return;
  }
  provider.callback()(req, res);
});

server.listen(port, '127.0.0.1', () => {
  const actual = server.address().port;
  issuer = `http://127.0.0.1:${actual}`;
  provider = build(issuer, 'A');
  process.stdout.write(`${JSON.stringify({ port: actual, issuer })}\n`);
});

// The test kills this process; a closed stdin (the test process gone) ends it too.
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
