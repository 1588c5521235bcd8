import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { run } from '@bufbuild/cel';
import { parse } from 'yaml';
import { parseMirrorSpec } from '../../sidecar/src/admin/admin-input.ts';
import { TOKEN_USERNAME, withUsername } from '../credentials.ts';
import { MIN_SNAPSHOT_RETAIN, snapshotRetain } from '../snapshot.ts';

/** Rules both programs apply, each kept here once: this holds every copy to it. */

const crd = parse(readFileSync(new URL('../../crds/gitmirror.yaml', import.meta.url), 'utf8'));
const spec = crd.spec.versions[0].schema.openAPIV3Schema.properties.spec;

describe('snapshot retention', () => {
  test('is raised to the minimum', () => {
    assert.equal(snapshotRetain(1), MIN_SNAPSHOT_RETAIN);
    assert.equal(snapshotRetain(MIN_SNAPSHOT_RETAIN), MIN_SNAPSHOT_RETAIN);
    assert.equal(snapshotRetain(7), 7);
  });

  test("the CRD's rule and the admin API refuse exactly what is below the minimum", () => {
    const rules = spec.properties.snapshot.properties.retain['x-kubernetes-validations'] as {
      rule: string;
    }[];
    const crdAccepts = (n: number) => rules.every((r) => run(r.rule, { self: BigInt(n) }) === true);
    const adminAccepts = (n: number) => {
      try {
        parseMirrorSpec({ url: 'https://github.com/org/repo.git', snapshot: { writer: false, retain: n } });
        return true;
      } catch {
        return false;
      }
    };
    for (const n of [MIN_SNAPSHOT_RETAIN - 1, MIN_SNAPSHOT_RETAIN, MIN_SNAPSHOT_RETAIN + 1]) {
      const expected = n >= MIN_SNAPSHOT_RETAIN;
      assert.equal(crdAccepts(n), expected, `CRD, retain ${n}`);
      assert.equal(adminAccepts(n), expected, `admin API, retain ${n}`);
    }
  });
});

describe('credentials', () => {
  test('a bare token is sent with the x-access-token user name, a given name is kept', () => {
    assert.deepEqual(withUsername({ password: 't0ken' }), { username: TOKEN_USERNAME, password: 't0ken' });
    assert.deepEqual(withUsername({ username: '', password: 't0ken' }), {
      username: 'x-access-token',
      password: 't0ken',
    });
    assert.deepEqual(withUsername({ username: 'bot', password: 'pw' }), { username: 'bot', password: 'pw' });
  });
});
