/**
 * A process that holds a pack cache and its hook socket, as the sidecar does, for tests
 * that kill it: `node cache-host.ts <options JSON>`. Prints one JSON line when listening
 * (`uploadPackArgs`, `env`) and one per generation it starts (`generation`: its process
 * group), so the test can clean up after a kill.
 */
import { realpathSync } from 'node:fs';
import { join } from 'node:path';
import { silentLogger } from '../../src/log/logger.ts';
import { PackHookServer } from '../../src/pack-cache/hook-server.ts';
import { PackCache } from '../../src/pack-cache/pack-cache.ts';
import { RecordingGit } from './fixtures.ts';

interface HostOptions {
  dir: string;
  repo: string;
  stallAfterBytes?: number;
  releaseFile?: string;
}

const options = JSON.parse(process.argv[2]!) as HostOptions;
const git = new RecordingGit({ stallAfterBytes: options.stallAfterBytes, releaseFile: options.releaseFile });
const spawn = git.spawn.bind(git);
git.spawn = (invocation) => {
  const proc = spawn(invocation);
  if (invocation.args.includes('pack-objects')) console.log(JSON.stringify({ generation: proc.child.pid }));
  return proc;
};
const cache = await PackCache.open({
  dir: join(options.dir, 'packs'),
  maxBytes: 1 << 30,
  ttlMs: 60_000,
  git,
  gitVersion: 'git version test',
  logger: silentLogger(),
  generationTimeoutMs: 60_000,
});
const repo = realpathSync(options.repo);
const hooks = await PackHookServer.listen({
  socketPath: join(options.dir, 'hook.sock'),
  cache,
  logger: silentLogger(),
  resolveRepository: (dir) => (dir === repo ? { repoId: 'example.com/org/repo', dir: repo } : undefined),
});
console.log(JSON.stringify({ uploadPackArgs: hooks.uploadPackArgs(), env: hooks.env() }));
