import assert from 'node:assert/strict';
import { generateKeyPairSync, verify } from 'node:crypto';
import { describe, it } from 'node:test';
import { appIdentity, DEFAULT_GITHUB_API_URL, gitHostOf, hasGitHubApp, parseGitHubApp } from '../src/app.ts';
import { isGitHubError } from '../src/errors.ts';
import { signAppJwt } from '../src/jwt.ts';

const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const PKCS1 = rsa.privateKey.export({ type: 'pkcs1', format: 'pem' }).toString();
const PKCS8 = rsa.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();

function secret(overrides: Record<string, string | undefined> = {}) {
  return { githubAppID: '12345', githubAppInstallationID: '678', githubAppPrivateKey: PKCS1, ...overrides };
}

function rejects(data: Record<string, string | undefined>, pattern: RegExp): void {
  assert.throws(
    () => parseGitHubApp(data, 'secret team/app'),
    (err: unknown) => {
      assert.ok(isGitHubError(err, 'GITHUB_APP_INVALID'), String(err));
      assert.match(err.message, pattern);
      assert.match(err.message, /secret team\/app/);
      assert.ok(!err.message.includes('PRIVATE KEY'), 'the key is never quoted');
      return true;
    },
  );
}

describe('GitHub App settings from a Secret', () => {
  it('tells an App Secret from a username/password one', () => {
    assert.equal(hasGitHubApp(secret()), true);
    assert.equal(hasGitHubApp({ username: 'u', password: 'p' }), false);
    assert.equal(hasGitHubApp({ password: 'p', githubAppID: '' }), false);
  });

  it('reads the App id, installation id, key and default API root', () => {
    const app = parseGitHubApp(secret(), 'secret team/app');
    assert.equal(app.appId, '12345');
    assert.equal(app.installationId, '678');
    assert.equal(app.baseUrl, DEFAULT_GITHUB_API_URL);
    assert.equal(app.privateKey.asymmetricKeyType, 'rsa');
  });

  it('accepts PKCS#8, surrounding whitespace and a PEM whose newlines arrived as literal \\n', () => {
    for (const pem of [PKCS8, `\n  ${PKCS1}\n\n`, PKCS1.trim().replaceAll('\n', '\\n')]) {
      const app = parseGitHubApp(secret({ githubAppPrivateKey: pem }), 'secret team/app');
      assert.equal(appIdentity(app), appIdentity(parseGitHubApp(secret(), 'x')), 'the same key');
    }
  });

  it('normalises GitHub Enterprise Server API roots', () => {
    const app = parseGitHubApp(secret({ githubAppBaseURL: 'https://ghe.example.com/api/v3/' }), 'x');
    assert.equal(app.baseUrl, 'https://ghe.example.com/api/v3');
    assert.equal(gitHostOf(app.baseUrl), 'ghe.example.com');
    assert.equal(gitHostOf(DEFAULT_GITHUB_API_URL), 'github.com');
  });

  it('names every missing key', () => {
    rejects({ githubAppID: '1' }, /lacks githubAppInstallationID, githubAppPrivateKey/);
  });

  it('refuses malformed ids, keys and API roots with a reason and without quoting them', () => {
    rejects(secret({ githubAppID: '12 34' }), /githubAppID must be the App's numeric id/);
    rejects(secret({ githubAppInstallationID: 'org/repo' }), /githubAppInstallationID must be a number/);
    rejects(
      secret({ githubAppPrivateKey: PKCS1.slice(0, 400) }),
      /githubAppPrivateKey is not a PEM private key/,
    );
    rejects(secret({ githubAppPrivateKey: 'ghp_not_a_key_at_all' }), /is not a PEM private key/);
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({
      type: 'pkcs8',
      format: 'pem',
    });
    rejects(secret({ githubAppPrivateKey: ec.toString() }), /must be an RSA key/);
    const small = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({
      type: 'pkcs1',
      format: 'pem',
    });
    rejects(secret({ githubAppPrivateKey: small.toString() }), /1024-bit RSA key/);
    rejects(secret({ githubAppBaseURL: 'ftp://ghe' }), /must be an http\(s\) URL/);
    rejects(secret({ githubAppBaseURL: 'https://user:pw@ghe/api/v3' }), /without credentials/);
    rejects(secret({ githubAppBaseURL: 'not a url' }), /is not a URL/);
  });

  it('identifies an installation by API root, ids and key fingerprint, with nothing secret in it', () => {
    const app = parseGitHubApp(secret(), 'x');
    const other = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({
      type: 'pkcs1',
      format: 'pem',
    });
    const rotated = parseGitHubApp(secret({ githubAppPrivateKey: other.toString() }), 'x');
    assert.notEqual(appIdentity(app), appIdentity(rotated), 'a rotated key is another identity');
    assert.match(appIdentity(app), /^https:\/\/api\.github\.com\|12345\|678\|[0-9a-f]{16}$/);
  });
});

describe('the App JWT', () => {
  const app = parseGitHubApp(secret(), 'x');
  const now = Date.UTC(2026, 11, 1, 12, 0, 0, 700);
  const jwt = signAppJwt(app, now);
  const [head, body, signature] = jwt.split('.') as [string, string, string];
  const decode = (part: string) => JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));

  it('is RS256 with iat 60 s back, exp 10 minutes after iat and the App id as iss', () => {
    assert.deepEqual(decode(head), { alg: 'RS256', typ: 'JWT' });
    const seconds = Math.floor(now / 1000);
    assert.deepEqual(decode(body), { iat: seconds - 60, exp: seconds - 60 + 600, iss: '12345' });
  });

  it('is signed with the App key and verifies with its public key only', () => {
    const input = Buffer.from(`${head}.${body}`);
    assert.equal(verify('sha256', input, rsa.publicKey, Buffer.from(signature, 'base64url')), true);
    const stranger = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey;
    assert.equal(verify('sha256', input, stranger, Buffer.from(signature, 'base64url')), false);
  });
});
