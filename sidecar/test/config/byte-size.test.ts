import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseByteSize } from '../../src/config/byte-size.ts';

describe('byte sizes in the environment', () => {
  it('reads whole bytes and binary suffixes, as env vars and Kubernetes quantities write them', () => {
    const size = (text: string) => parseByteSize(text, 'GITMIRROR_PACK_CACHE_MAX_BYTES');
    assert.equal(size('0'), 0);
    assert.equal(size('1073741824'), 2 ** 30);
    assert.equal(size('512MiB'), 512 * 2 ** 20);
    assert.equal(size('512mib'), 512 * 2 ** 20);
    assert.equal(size(' 2GiB '), 2 * 2 ** 30);
    assert.equal(size('20 GiB'), 20 * 2 ** 30);
    assert.equal(size('20Gi'), 20 * 2 ** 30);
    assert.equal(size('1.5KiB'), 1536);
  });

  it('refuses anything else with the variable named', () => {
    for (const text of ['', 'lots', '-1', '2 GB', '2GB', '1e9', '0x10']) {
      assert.throws(
        () => parseByteSize(text, 'GITMIRROR_PACK_CACHE_MAX_BYTES'),
        /GITMIRROR_PACK_CACHE_MAX_BYTES: ".*" is not a size in bytes/,
      );
    }
  });
});
