import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isGitMirrorError } from '../../src/errors/gitmirror-error.ts';
import { liveChildCount, runProcess } from '../../src/process/child-process.ts';

describe('child processes', () => {
  it('reports output over the cap as such, not as a cancellation', async () => {
    await assert.rejects(
      runProcess('sh', ['-c', 'yes | head -c 1000000'], { timeoutMs: 10_000, maxStdoutBytes: 1000 }),
      (err) => isGitMirrorError(err, 'PROCESS_FAILED') && /output exceeded 1000 bytes/.test(err.message),
    );
  });

  it('kills the whole process group on timeout', async () => {
    await assert.rejects(runProcess('sh', ['-c', 'sleep 30 & sleep 30'], { timeoutMs: 200 }), (err) =>
      isGitMirrorError(err, 'PROCESS_TIMEOUT'),
    );
    assert.equal(liveChildCount(), 0);
  });

  it('names the failing command and the tail of its stderr', async () => {
    await assert.rejects(
      runProcess('sh', ['-c', 'echo boom >&2; exit 3'], { timeoutMs: 10_000 }),
      (err) => isGitMirrorError(err, 'PROCESS_FAILED') && /exited with 3: boom/.test(err.message),
    );
  });
});
