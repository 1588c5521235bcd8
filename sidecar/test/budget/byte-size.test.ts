import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatBytes } from '../../../core/byte-size.ts';
import { parseByteSize } from '../../src/budget/byte-size.ts';
import { isGitMirrorError } from '../../src/errors/gitmirror-error.ts';

describe('GITMIRROR_DATA_BUDGET sizes', () => {
  it('reads bytes, binary units and Kubernetes quantity suffixes', () => {
    assert.equal(parseByteSize('1073741824', 'X'), 1024 ** 3);
    assert.equal(parseByteSize('512MiB', 'X'), 512 * 1024 ** 2);
    assert.equal(parseByteSize('1.5GiB', 'X'), 1.5 * 1024 ** 3);
    assert.equal(parseByteSize('10Gi', 'X'), 10 * 1024 ** 3);
    assert.equal(parseByteSize(' 64 KiB ', 'X'), 64 * 1024);
    assert.equal(parseByteSize('2TiB', 'X'), 2 * 1024 ** 4);
  });

  it('refuses decimal units, negative and malformed sizes with the variable named', () => {
    for (const text of ['1GB', '10G', '-1', '1e9', 'lots', '', '1.5.2GiB', '99999999999999999999TiB']) {
      assert.throws(
        () => parseByteSize(text, 'GITMIRROR_DATA_BUDGET'),
        (err) => isGitMirrorError(err, 'CONFIG_INVALID') && err.message.startsWith('GITMIRROR_DATA_BUDGET:'),
        text,
      );
    }
  });

  it('writes sizes the way a person reads them', () => {
    assert.equal(formatBytes(0), '0 B');
    assert.equal(formatBytes(1023), '1023 B');
    assert.equal(formatBytes(1536), '1.5 KiB');
    assert.equal(formatBytes(12.5 * 1024 ** 2), '12.5 MiB');
    assert.equal(formatBytes(1.2 * 1024 ** 3), '1.2 GiB');
    assert.equal(formatBytes(300 * 1024 ** 3), '300 GiB');
  });
});
