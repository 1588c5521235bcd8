/**
 * Deliberately broken builds, to prove each invariant of the soak can fail. Nothing here is
 * in the image or the product's code: a sabotage is a small ES module that the soak hands to
 * the real image's Node through the chart's `extraEnv` as
 * `NODE_OPTIONS=--import=data:text/javascript;base64,...`, so it runs inside the real
 * sidecar (or operator) process before its own code and patches what it breaks. Only the
 * soak sets it, and only when `--sabotage` names it.
 */

/** Each sabotage and the invariant that must catch it. */
export const SABOTAGES = {
  // The sidecar opens /dev/null for every git request and never closes it.
  'fd-leak': { target: 'fleet', catches: 'no-growth' },
  // The sidecar keeps 1 MiB for every git request.
  'memory-leak': { target: 'fleet', catches: 'no-growth' },
  // The operator keeps 1 MiB every second.
  'operator-memory-leak': { target: 'operator', catches: 'no-growth' },
  // The admin API says every mirror is ready while it is still restoring or cloning.
  'ready-early': { target: 'fleet', catches: 'ready-implies-warm' },
  // The admin API says this sidecar is the snapshot writer of every mirror.
  'two-writers': { target: 'fleet', catches: 'single-writer' },
  // Every 5th git POST has its connection cut.
  flaky: { target: 'fleet', catches: 'ops-succeed' },
  // Fetches run with --dry-run: the mirrors never move.
  stale: { target: 'fleet', catches: 'lag' },
  // After each fetch a malformed commit (no author) appears under refs/heads/sabotage.
  'bad-object': { target: 'fleet', catches: 'clones-intact' },
  // A directory appears in the data dir's tmp/ every 20 s.
  'temp-leftover': { target: 'fleet', catches: 'nothing-left-over' },
  // A detached `sleep` the sidecar never waits for.
  orphan: { target: 'fleet', catches: 'nothing-left-over' },
  // 2 MiB a second written into the data dir until it holds 5% more than the sidecar's budget
  // (still short of the volume's size, where the kubelet would evict the pod, again and again).
  'disk-hog': { target: 'fleet', catches: 'data-budget' },
  // Downloads of the medium repository's archives ask for a key that is not there: its
  // restores fail and the pod clones it from upstream instead.
  'no-restore': { target: 'fleet', catches: 'restores-not-clones' },
} as const;

export type Sabotage = keyof typeof SABOTAGES;

export function isSabotage(name: string): name is Sabotage {
  return Object.hasOwn(SABOTAGES, name);
}

const GIT_REQUEST = `
const gitRequests = (onRequest) => {
  const emit = http.Server.prototype.emit;
  http.Server.prototype.emit = function (event, req, res) {
    if (event === 'request' && req.url.startsWith('/git/')) onRequest(req, res);
    return emit.apply(this, arguments);
  };
};`;

const ADMIN_JSON = `
const patchStatus = (patch) => {
  const stringify = JSON.stringify;
  const fix = (m) => (m && typeof m === 'object' && typeof m.id === 'string' && m.restore && m.snapshot ? patch({ ...m }) : m);
  JSON.stringify = function (value, ...rest) {
    if (value && Array.isArray(value.mirrors)) value = { ...value, mirrors: value.mirrors.map(fix) };
    else value = fix(value);
    return stringify.call(this, value, ...rest);
  };
};`;

const SPAWN = `
const patchGit = (patch) => {
  const spawn = childProcess.spawn;
  childProcess.spawn = function (command, args, options) {
    const child = spawn.call(this, command, command === 'git' ? patch.args(args) : args, options);
    if (command === 'git' && patch.after) child.once('exit', (code) => { if (code === 0) patch.after(args, options); });
    return child;
  };
  syncBuiltinESMExports();
};
const isFetch = (args) => args.includes('fetch') && args.includes('origin');`;

const BODIES: Record<Sabotage, string> = {
  'fd-leak': `gitRequests(() => { fs.openSync('/dev/null', 'r'); });`,
  'memory-leak': `const kept = []; gitRequests(() => { kept.push(Buffer.alloc(1024 * 1024, 1)); });`,
  'operator-memory-leak': `const kept = []; setInterval(() => kept.push(Buffer.alloc(1024 * 1024, 1)), 1000).unref();`,
  'ready-early': `patchStatus((m) => ((m.state === 'restoring' || m.state === 'cloning') ? { ...m, state: 'ready', ready: true } : m));`,
  'two-writers': `patchStatus((m) => ({ ...m, snapshot: { ...m.snapshot, writer: true } }));`,
  flaky: `let n = 0; gitRequests((req) => { if (req.method === 'POST' && ++n % 5 === 0) req.socket.destroy(); });`,
  stale: `patchGit({ args: (args) => (isFetch(args) ? [...args.slice(0, -1), '--dry-run', 'origin'] : args) });`,
  'bad-object': `patchGit({
  args: (args) => args,
  after: (args, options) => {
    if (!isFetch(args) || !options?.cwd) return;
    const git = (a, input) => childProcess.execFileSync('git', a, { cwd: options.cwd, input, env: options.env }).toString().trim();
    try {
      const tree = git(['rev-parse', 'HEAD^{tree}']);
      const commit = git(['hash-object', '--literally', '-t', 'commit', '-w', '--stdin'], 'tree ' + tree + '\\ncommitter x <x@example.invalid> 1 +0000\\n\\nno author\\n');
      git(['update-ref', 'refs/heads/sabotage', commit]);
    } catch {}
  },
});`,
  'temp-leftover': `setInterval(() => { try { fs.mkdirSync(process.env.GITMIRROR_DATA_DIR + '/tmp/sabotage-' + Date.now(), { recursive: true }); } catch {} }, 20000).unref();`,
  orphan: `setTimeout(() => childProcess.spawn('sleep', ['86400'], { detached: true, stdio: 'ignore' }).unref(), 5000).unref();`,
  'no-restore': `const request = http.request;
http.request = function (options, ...rest) {
  if (options && typeof options === 'object' && (options.method ?? 'GET') === 'GET' && /\\/medium\\/.*\\.tar\\.zst/.test(options.path ?? ''))
    options = { ...options, path: options.path.replace('.tar.zst', '.sabotaged.tar.zst') };
  return request.call(this, options, ...rest);
};
syncBuiltinESMExports();`,
  'disk-hog': `const chunk = Buffer.alloc(2 * 1024 * 1024, 7);
const dir = process.env.GITMIRROR_DATA_DIR;
const budget = Number(process.env.GITMIRROR_DATA_BUDGET);
const used = (path) => {
  let bytes = 0;
  for (const e of fs.readdirSync(path, { withFileTypes: true })) {
    try { bytes += e.isDirectory() ? used(path + '/' + e.name) : fs.lstatSync(path + '/' + e.name).blocks * 512; } catch {}
  }
  return bytes;
};
setInterval(() => { try { if (used(dir) < budget * 1.05) fs.appendFileSync(dir + '/sabotage-hog', chunk); } catch {} }, 1000).unref();`,
};

/** The ES module that applies `names` (all of one target), run only in the main thread. */
export function sabotageModule(names: Sabotage[]): string {
  return [
    `import http from 'node:http';`,
    `import fs from 'node:fs';`,
    `import childProcess from 'node:child_process';`,
    `import { syncBuiltinESMExports } from 'node:module';`,
    `import { isMainThread } from 'node:worker_threads';`,
    `if (isMainThread) {`,
    GIT_REQUEST,
    ADMIN_JSON,
    SPAWN,
    ...names.map((n) => `{\n${BODIES[n]}\n}`),
    `}`,
  ].join('\n');
}

/** Chart values that run `names` in the fleet's sidecars and the operators. */
export function sabotageValues(names: Sabotage[]): Record<string, unknown> {
  const env = (target: 'fleet' | 'operator') => {
    const chosen = names.filter((n) => SABOTAGES[n].target === target);
    if (chosen.length === 0) return undefined;
    const encoded = Buffer.from(sabotageModule(chosen)).toString('base64');
    return [{ name: 'NODE_OPTIONS', value: `--import=data:text/javascript;base64,${encoded}` }];
  };
  const fleet = env('fleet');
  const operator = env('operator');
  return {
    ...(fleet && { fleet: { extraEnv: fleet } }),
    ...(operator && { operator: { extraEnv: operator } }),
  };
}
