import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { errorKind, OperatorError } from '../src/errors/operator-error.ts';

describe('what an error tells the controller to do', () => {
  test('spec and credentials errors stall, with the reason the GitMirror shows', () => {
    const cases = [
      ['SPEC_INVALID', 'InvalidSpec'],
      ['CREDENTIALS_NOT_FOUND', 'CredentialsNotFound'],
      ['CREDENTIALS_INVALID', 'CredentialsInvalid'],
    ] as const;
    for (const [code, reason] of cases) {
      const err = new OperatorError(code, 'x');
      assert.equal(err.kind, 'stalled', code);
      assert.equal(err.stalledReason, reason);
    }
  });

  test('a blocked writer hand-over is a wait, and must say how long', () => {
    const err = new OperatorError('WRITER_HANDOVER_BLOCKED', 'x', { requeueAfterMs: 10_000 });
    assert.equal(err.kind, 'waiting');
    assert.equal(err.requeueAfterMs, 10_000);
    assert.equal(err.stalledReason, undefined);
    assert.throws(() => new OperatorError('WRITER_HANDOVER_BLOCKED', 'x'), TypeError);
  });

  test('everything else, and anything the operator did not raise, is transient', () => {
    for (const code of ['KUBE_CONFLICT', 'KUBE_UNAVAILABLE', 'SIDECAR_TIMEOUT', 'SIDECAR_REJECTED'] as const)
      assert.equal(errorKind(new OperatorError(code, 'x')), 'transient', code);
    assert.equal(errorKind(new Error('boom')), 'transient');
    assert.equal(errorKind('a string'), 'transient');
  });
});
