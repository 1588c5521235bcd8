import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { foreignMounts, hostPathOf, parseMountinfo } from './pod-filesystem.ts';

const HOST = parseMountinfo(
  [
    '27 1 254:0 / / rw,relatime - ext4 /dev/vda rw',
    '24 27 0:6 / /dev rw,relatime - devtmpfs devtmpfs rw,mode=755',
    '40 27 0:35 / /work rw,relatime - ext4 /dev/vdb rw',
  ].join('\n'),
);
const IMAGE = '/root/.cache/gitmirror-image/rootfs/abc';
const POD = '/tmp/gitmirror-e2e-cluster-1-x/pods/ns_p_uid';
const allowed = { imageRootfs: IMAGE, podDir: POD, hostMounts: HOST };

/** A container's mount table as the test kubelet sets it up (paths relative to its root). */
const CLEAN = [
  `500 400 0:90 / / rw - overlay overlay rw,lowerdir=${IMAGE},upperdir=${POD}/containers/c/upper,workdir=${POD}/containers/c/work`,
  '501 500 0:91 / /proc rw - proc proc rw',
  '502 500 0:92 / /sys ro - sysfs sysfs ro',
  '503 500 0:93 / /dev rw - tmpfs tmpfs rw,mode=755',
  '504 503 0:94 / /dev/pts rw - devpts devpts rw',
  '505 503 0:95 / /dev/shm rw - tmpfs shm rw',
  `506 500 254:0 ${POD}/etc/hosts /etc/hosts rw - ext4 /dev/vda rw`,
  `507 500 254:0 ${POD}/volumes/data /data rw - ext4 /dev/vda rw`,
  `508 500 254:0 ${POD}/volumes/kube-api-access/..2026_01_01 /run/secrets/kubernetes.io/serviceaccount ro - ext4 /dev/vda rw`,
];

describe('foreignMounts: what of the host a container can see', () => {
  test('the image overlay, fresh kernel file systems and the pod dir’s binds are not the host', () => {
    assert.deepEqual(foreignMounts(parseMountinfo(CLEAN.join('\n')), allowed), []);
  });

  test('a bind of the checkout, the host’s /usr or /dev is reported with its host path', () => {
    const leaky = [
      ...CLEAN,
      '509 500 254:0 /work/wt/x /app rw - ext4 /dev/vda rw',
      '510 500 254:0 /usr /usr ro - ext4 /dev/vda rw',
      '511 500 0:6 / /dev/host rw - devtmpfs devtmpfs rw',
      '512 500 0:35 /wt/x/node_modules /app/node_modules rw - ext4 /dev/vdb rw',
    ];
    assert.deepEqual(foreignMounts(parseMountinfo(leaky.join('\n')), allowed), [
      '/app shows /work/wt/x',
      '/usr shows /usr',
      '/dev/host shows /dev',
      '/app/node_modules shows /work/wt/x/node_modules',
    ]);
  });

  test('a root that is not the image’s overlay is reported', () => {
    const tmpfsRoot = ['500 400 0:90 / / rw - tmpfs rootfs rw', ...CLEAN.slice(1)];
    assert.match(foreignMounts(parseMountinfo(tmpfsRoot.join('\n')), allowed)[0]!, /not the image's overlay/);
    const otherImage = [CLEAN[0]!.replace(IMAGE, '/usr'), ...CLEAN.slice(1)];
    assert.equal(foreignMounts(parseMountinfo(otherImage.join('\n')), allowed).length, 1);
  });

  test('the host’s own mount table, read as a container’s, is all foreign (the check can fail)', () => {
    const host = parseMountinfo(readFileSync('/proc/self/mountinfo', 'utf8'));
    const found = foreignMounts(host, { ...allowed, hostMounts: host });
    assert.ok(
      found.some((f) => f.startsWith('/ is ')),
      'the host root is not an image overlay',
    );
    assert.ok(found.length >= host.length / 2, `only ${found.length} of ${host.length} found`);
  });

  test('hostPathOf follows the host mount of the same device', () => {
    const [bind] = parseMountinfo('1 1 0:35 /wt/a /x rw - ext4 /dev/vdb rw');
    assert.equal(hostPathOf(bind!, HOST), '/work/wt/a');
  });
});
