import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadSidecarConfig } from '../../src/config/sidecar-config.ts';
import { isGitMirrorError } from '../../src/errors/gitmirror-error.ts';

describe('sidecar configuration', () => {
  it('has the documented defaults', () => {
    const config = loadSidecarConfig({ GITMIRROR_DATA_DIR: '/data' });
    assert.deepEqual(config.listen, { host: '0.0.0.0', port: 8080 });
    assert.deepEqual(config.adminListen, { host: '0.0.0.0', port: 9090 });
    assert.equal(config.snapshotStoreUrl, 'file:///data/snapshots');
    assert.deepEqual([...config.allowedHosts], ['github.com', 'gitlab.com', 'bitbucket.org']);
    assert.equal(config.snapshotIntervalMs, undefined);
    assert.deepEqual(config.mirrors, []);
    assert.equal(config.maxOnDemandMirrors, 100);
    assert.equal(config.packCacheMaxBytes, undefined, 'a tenth of the data volume, worked out at start');
    assert.equal(config.packCacheTtlMs, 300_000);
  });

  it('takes the pack cache budget as a byte size (0 turns it off) and its TTL as a duration', () => {
    const config = (env: Record<string, string>) => loadSidecarConfig(env);
    assert.equal(config({ GITMIRROR_PACK_CACHE_MAX_BYTES: '2GiB' }).packCacheMaxBytes, 2 * 2 ** 30);
    assert.equal(config({ GITMIRROR_PACK_CACHE_MAX_BYTES: '0' }).packCacheMaxBytes, 0);
    assert.equal(config({ GITMIRROR_PACK_CACHE_MAX_BYTES: ' ' }).packCacheMaxBytes, undefined);
    assert.equal(config({ GITMIRROR_PACK_CACHE_TTL: '0s' }).packCacheTtlMs, 0);
    assert.throws(
      () => config({ GITMIRROR_PACK_CACHE_MAX_BYTES: '2 GB' }),
      (e) => isGitMirrorError(e, 'CONFIG_INVALID') && e.message.includes('GITMIRROR_PACK_CACHE_MAX_BYTES'),
    );
    assert.throws(
      () => config({ GITMIRROR_PACK_CACHE_TTL: '5' }),
      (e) => isGitMirrorError(e, 'CONFIG_INVALID') && e.message.includes('GITMIRROR_PACK_CACHE_TTL'),
    );
  });

  it('takes GITMIRROR_MAX_ON_DEMAND_MIRRORS as a whole number, 0 included, and refuses anything else', () => {
    for (const [text, n] of [
      ['0', 0],
      ['1', 1],
      [' 250 ', 250],
      ['', 100],
    ] as const)
      assert.equal(loadSidecarConfig({ GITMIRROR_MAX_ON_DEMAND_MIRRORS: text }).maxOnDemandMirrors, n, text);
    for (const junk of ['-1', '1.5', '1e3', '0x10', 'ten', '10 mirrors', '99999999999999999999']) {
      assert.throws(
        () => loadSidecarConfig({ GITMIRROR_MAX_ON_DEMAND_MIRRORS: junk }),
        (e) =>
          isGitMirrorError(e, 'CONFIG_INVALID') &&
          e.message.includes('GITMIRROR_MAX_ON_DEMAND_MIRRORS') &&
          e.message.includes(junk),
        junk,
      );
    }
  });

  it('parses lists, durations and listen addresses', () => {
    const config = loadSidecarConfig({
      GITMIRROR_MIRRORS: 'https://github.com/a/b, https://gitlab.com/c/d.git',
      GITMIRROR_SNAPSHOT_INTERVAL: '1h30m',
      GITMIRROR_LISTEN: '[::1]:8081',
      GITMIRROR_ALLOWED_HOSTS: 'Git.Example.com',
    });
    assert.deepEqual(config.mirrors, ['https://github.com/a/b', 'https://gitlab.com/c/d.git']);
    assert.equal(config.snapshotIntervalMs, 5_400_000);
    assert.deepEqual(config.listen, { host: '::1', port: 8081 });
    assert.ok(config.allowedHosts.has('git.example.com'));
  });

  it('explains what is wrong with a bad value', () => {
    assert.throws(
      () => loadSidecarConfig({ GITMIRROR_LISTEN: 'nope' }),
      (e) => isGitMirrorError(e, 'CONFIG_INVALID') && e.message.includes('GITMIRROR_LISTEN'),
    );
    assert.throws(
      () => loadSidecarConfig({ GITMIRROR_FETCH_INTERVAL: '5 minutes' }),
      (e) => isGitMirrorError(e, 'CONFIG_INVALID') && e.message.includes('GITMIRROR_FETCH_INTERVAL'),
    );
    assert.throws(
      () => loadSidecarConfig({ GITMIRROR_JOB_CONCURRENCY: '0' }),
      (e) => isGitMirrorError(e, 'CONFIG_INVALID'),
    );
  });

  it('reads durations in the grammar the CRD uses', () => {
    const config = loadSidecarConfig({ GITMIRROR_FETCH_INTERVAL: '1h5m', GITMIRROR_FRESHNESS_WAIT: '250ms' });
    assert.equal(config.fetchIntervalMs, 3_900_000);
    assert.equal(config.freshnessWaitMs, 250);
    for (const value of ['30', '1d', '5x', 'm5']) {
      assert.throws(
        () => loadSidecarConfig({ GITMIRROR_REF_CHECK_INTERVAL: value }),
        (e) =>
          isGitMirrorError(e, 'CONFIG_INVALID') &&
          /GITMIRROR_REF_CHECK_INTERVAL.*30s, 5m or 1h30m/.test(e.message),
        value,
      );
    }
  });
});
