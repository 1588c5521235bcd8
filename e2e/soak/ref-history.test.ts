import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { cloneRefs, parseRefs, RefHistory } from './ref-history.ts';

const A = 'a'.repeat(40);
const B = 'b'.repeat(40);
const C = 'c'.repeat(40);

function history(): RefHistory {
  const h = new RefHistory(
    'small',
    new Map([
      ['refs/heads/main', A],
      ['refs/tags/v1', A],
    ]),
    1000,
  );
  h.apply({ at: 2000, ref: 'refs/heads/main', sha: B });
  h.apply({ at: 3000, ref: 'refs/tags/v1', sha: null });
  h.apply({ at: 4000, ref: 'refs/heads/main', sha: C });
  return h;
}

describe('an upstream ref history', () => {
  it('finds every state upstream went through, and only those', () => {
    const h = history();
    assert.equal(
      h.indexOf(
        new Map([
          ['refs/heads/main', A],
          ['refs/tags/v1', A],
        ]),
      ),
      0,
    );
    assert.equal(
      h.indexOf(
        new Map([
          ['refs/heads/main', B],
          ['refs/tags/v1', A],
        ]),
      ),
      1,
    );
    assert.equal(h.indexOf(new Map([['refs/heads/main', B]])), 2);
    assert.equal(h.indexOf(new Map([['refs/heads/main', C]])), 3);
    // The new main with a tag that was deleted before it: a mix upstream never had.
    assert.equal(
      h.indexOf(
        new Map([
          ['refs/heads/main', C],
          ['refs/tags/v1', A],
        ]),
      ),
      undefined,
    );
    assert.equal(
      h.indexOf(
        new Map([
          ['refs/heads/main', C],
          ['refs/heads/extra', A],
        ]),
      ),
      undefined,
    );
  });

  it('knows which values a ref ever had and which state stood at a time', () => {
    const h = history();
    assert.ok(h.everHad('refs/heads/main', B));
    assert.ok(!h.everHad('refs/heads/main', 'd'.repeat(40)));
    assert.deepEqual(
      [500, 1999, 2000, 3500, 9999].map((t) => h.stateAt(t)),
      [0, 0, 1, 2, 3],
    );
    assert.deepEqual(
      [0, 1, 3].map((i) => h.since(i)),
      [1000, 2000, 4000],
    );
  });

  it('survives a round trip through JSON', () => {
    const h = history();
    const back = RefHistory.fromJson(JSON.parse(JSON.stringify(h)));
    assert.equal(back.latest, 3);
    assert.equal(back.indexOf(new Map([['refs/heads/main', B]])), 2);
  });

  it('reads ls-remote output and a clone in upstream’s namespace', () => {
    const listing = `${A}\tHEAD\n${A}\trefs/heads/main\n${B}\trefs/tags/v1\n${C}\trefs/tags/v1^{}\n`;
    assert.deepEqual(
      parseRefs(listing),
      new Map([
        ['refs/heads/main', A],
        ['refs/tags/v1', B],
      ]),
    );
    const clone = `${A} refs/heads/main\n${A} refs/remotes/origin/HEAD\n${A} refs/remotes/origin/main\n${B} refs/remotes/origin/feature\n${C} refs/tags/v1\n`;
    assert.deepEqual(
      cloneRefs(clone),
      new Map([
        ['refs/heads/main', A],
        ['refs/heads/feature', B],
        ['refs/tags/v1', C],
      ]),
    );
  });

  it('names how refs that are no state differ from the nearest one', () => {
    const h = history();
    // The tag already pruned, main not yet moved: what a fetch stopped half way would leave.
    const got = new Map([['refs/heads/main', A]]);
    assert.equal(h.indexOf(got), undefined);
    assert.deepEqual(h.nearest(got, 2500), {
      state: 0,
      differences: ['refs/tags/v1: got none, upstream aaaaaaaaaa'],
    });
    assert.deepEqual(
      h.nearest(
        new Map([
          ['refs/heads/main', C],
          ['refs/heads/x', B],
        ]),
        5000,
      ),
      {
        state: 3,
        differences: ['refs/heads/x: got bbbbbbbbbb, upstream none'],
      },
    );
  });
});
