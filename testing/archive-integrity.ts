import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { placePieces } from '../sidecar/src/archive/archive-layout.ts';
import { skippableFrameData } from '../sidecar/src/archive/zstd-frames.ts';

/** What a manifest says of one archive (`SnapshotRecord`). */
export interface ArchiveRecord {
  key: string;
  sizeBytes: number;
  sha256: string;
  format?: string;
  indexBytes?: number;
}

function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/**
 * Asserts that `body` is exactly the archive `record` vouches for, as a restore would check
 * it: format 1, one sha256 of the whole; format 2, the index's sha256, then every piece's.
 */
export function assertArchiveMatches(body: Buffer, record: ArchiveRecord): void {
  assert.equal(body.length, record.sizeBytes, `${record.key} size`);
  if (record.indexBytes === undefined) {
    assert.equal(sha256(body), record.sha256, `${record.key} sha256`);
    return;
  }
  const frame = body.subarray(body.length - record.indexBytes);
  assert.equal(sha256(frame), record.sha256, `${record.key} index sha256`);
  const index = JSON.parse(skippableFrameData(frame)!.toString('utf8'));
  for (const piece of placePieces(index, body.length, record.indexBytes))
    assert.equal(
      sha256(body.subarray(piece.offset, piece.offset + piece.bytes)),
      piece.sha256,
      `${record.key} piece`,
    );
}
