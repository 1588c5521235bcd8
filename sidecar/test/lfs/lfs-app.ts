import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { ProcessGitRunner } from '../../src/git/git-runner.ts';
import { LfsAccessVerdicts } from '../../src/lfs/access-verdicts.ts';
import { type LfsRepository, LfsService } from '../../src/lfs/lfs-service.ts';
import { LfsMembership } from '../../src/lfs/membership.ts';
import { UpstreamLfs } from '../../src/lfs/upstream-lfs.ts';
import { type LfsKeyring, LfsUrlTokens } from '../../src/lfs/url-token.ts';
import { silentLogger } from '../../src/log/logger.ts';
import { parseRepoId, type RepoId } from '../../src/mirrors/repo-id.ts';
import type { SnapshotStore } from '../../src/snapshot/store.ts';
import { replicaCache } from './support.ts';

/**
 * The LFS service on its own HTTP server, routed the way the sidecar routes
 * `/git/{host}/{path}.git/info/lfs/...`, with `describe` saying what the cache knows of a
 * repository (mirror, access, directory): the seam the git layer fills in.
 */
export async function startLfsApp(options: {
  dataDir: string;
  httpHosts: string[];
  keyring: LfsKeyring;
  store?: SnapshotStore;
  describe: (repo: RepoId) => LfsRepository;
}) {
  const replica = await replicaCache(options.dataDir, { store: options.store });
  const service = new LfsService({
    describe: options.describe,
    objects: replica.cache,
    tokens: new LfsUrlTokens({ keyring: options.keyring }),
    upstream: new UpstreamLfs({ httpHosts: new Set(options.httpHosts) }),
    membership: new LfsMembership({ git: new ProcessGitRunner() }),
    verdicts: new LfsAccessVerdicts(),
    metrics: replica.metrics,
    logger: silentLogger(),
  });
  const app = express();
  app.all('/git/*path', async (req, res) => {
    const match = /^\/git\/(.+?)\/info\/lfs(\/.*)$/.exec(req.path);
    if (!match) {
      res.status(404).end();
      return;
    }
    await service.handle(req, res, parseRepoId(match[1]!), match[2]!);
  });
  const server: Server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    ...replica,
    url,
    lfsUrl: (repo: string) => `${url}/git/${repo}.git/info/lfs`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
