import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { isGitMirrorError } from '../../src/errors/gitmirror-error.ts';
import { parseUploadPackHead, pktLine } from '../../src/http/pkt-line.ts';

const A = 'a'.repeat(40);
const B = 'b'.repeat(40);

describe('upload-pack request heads', () => {
  it('reads v0 wants up to the flush before the haves', () => {
    const body = `${pktLine(`want ${A} multi_ack side-band-64k\n`)}${pktLine(`want ${B}\n`)}${pktLine('deepen 1\n')}0000${pktLine(`have ${B}\n`)}`;
    const head = parseUploadPackHead(Buffer.from(body));
    assert.deepEqual(head.wants, [A, B]);
    assert.equal(head.complete, true);
    assert.equal(head.command, undefined);
  });

  it('reads v2 fetch commands with arguments after the delimiter', () => {
    const body = `${pktLine('command=fetch\n')}${pktLine('agent=git/2\n')}0001${pktLine('thin-pack\n')}${pktLine(`want ${A}\n`)}${pktLine('done\n')}0000`;
    const head = parseUploadPackHead(Buffer.from(body));
    assert.equal(head.command, 'fetch');
    assert.deepEqual(head.wants, [A]);
    assert.equal(head.complete, true);
  });

  it('reports an incomplete head while bytes are missing', () => {
    const body = `${pktLine(`want ${A}\n`)}${pktLine(`want ${B}\n`)}`;
    const head = parseUploadPackHead(Buffer.from(body).subarray(0, body.length - 3));
    assert.equal(head.complete, false);
    assert.deepEqual(head.wants, [A]);
  });

  it('rejects malformed lengths and object ids', () => {
    for (const body of [
      'zzzz',
      '0003',
      `${pktLine('want nothex\n')}`,
      'ffff',
      `${pktLine(`want ${A.slice(1)}\n`)}`,
    ]) {
      assert.throws(
        () => parseUploadPackHead(Buffer.from(body)),
        (err) => isGitMirrorError(err, 'BAD_REQUEST'),
        body,
      );
    }
  });

  it('never throws anything but BAD_REQUEST on arbitrary bytes (fuzz)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        try {
          const head = parseUploadPackHead(Buffer.from(bytes));
          assert.ok(head.consumed <= bytes.length);
        } catch (err) {
          assert.ok(isGitMirrorError(err, 'BAD_REQUEST'));
        }
      }),
      { numRuns: 5000 },
    );
  });
});
