import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseRequestHeader } from '../../src/pack-cache/hook-channel.ts';

const request = (args: string[], stdin: string) =>
  Buffer.from(
    `gitmirror-pack-request 1\n${args.length}\n${args.map((a) => `${a}\n`).join('')}${stdin.length}\n${stdin}`,
  );

describe('the hook’s request on its channel', () => {
  it('reads the arguments, an empty one included, and where stdin starts', () => {
    const bytes = request(
      ['git', '--shallow-file', '', 'pack-objects', '--revs', '--stdout'],
      'abc\n--not\n\n',
    );
    const header = parseRequestHeader(bytes, 1024);
    assert.ok(typeof header === 'object' && !(header instanceof Error));
    assert.deepEqual(header.args, ['git', '--shallow-file', '', 'pack-objects', '--revs', '--stdout']);
    assert.equal(header.stdinBytes, 11);
    assert.equal(bytes.subarray(header.offset).toString(), 'abc\n--not\n\n');
  });

  it('waits for more bytes until the header is complete', () => {
    const bytes = request(['git', 'pack-objects'], 'x\n');
    for (let cut = 0; cut < bytes.indexOf('x\n'); cut++)
      assert.equal(parseRequestHeader(bytes.subarray(0, cut), 1024), 'partial', `cut at ${cut}`);
  });

  it('refuses what is not a request, and stdin above the bound', () => {
    assert.ok(parseRequestHeader(Buffer.from('GET / HTTP/1.1\r\n'), 1024) instanceof Error);
    assert.ok(parseRequestHeader(Buffer.from('x'.repeat(100)), 1024) instanceof Error);
    assert.ok(parseRequestHeader(Buffer.from('gitmirror-pack-request 1\nmany\n'), 1024) instanceof Error);
    assert.ok(parseRequestHeader(request(['git'], 'y'.repeat(2000)), 1024) instanceof Error);
  });
});
