import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type RegistryAccessFacts, registrySecrets, SYSTEM_CA_BUNDLE } from '../registry-access.ts';

const facts = (over: Partial<RegistryAccessFacts>, present: string[]): RegistryAccessFacts => ({
  npmCafile: 'null',
  npmUserconfig: '/home/u/.npmrc',
  env: {},
  exists: (path) => present.includes(path),
  ...over,
});

describe('registry access handed to the build as secrets', () => {
  test('npm’s cafile first, then NODE_EXTRA_CA_CERTS, then the system bundle', () => {
    const all = ['/etc/npm-ca.pem', '/etc/extra.pem', SYSTEM_CA_BUNDLE];
    const env = { NODE_EXTRA_CA_CERTS: '/etc/extra.pem' };
    assert.equal(
      registrySecrets(facts({ npmCafile: '/etc/npm-ca.pem', env }, all))[0]?.src,
      '/etc/npm-ca.pem',
    );
    assert.equal(registrySecrets(facts({ env }, all))[0]?.src, '/etc/extra.pem');
    assert.equal(registrySecrets(facts({}, all))[0]?.src, SYSTEM_CA_BUNDLE);
  });

  test('a configured path that does not exist is skipped; nothing at all gives no secret', () => {
    assert.equal(
      registrySecrets(facts({ npmCafile: '/gone.pem' }, [SYSTEM_CA_BUNDLE]))[0]?.src,
      SYSTEM_CA_BUNDLE,
    );
    assert.deepEqual(registrySecrets(facts({}, [])), []);
  });

  test('the user’s npmrc goes along when it exists', () => {
    assert.deepEqual(registrySecrets(facts({}, ['/home/u/.npmrc'])), [
      { id: 'npmrc', src: '/home/u/.npmrc' },
    ]);
  });
});
