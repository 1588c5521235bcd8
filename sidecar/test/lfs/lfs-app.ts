import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { systemClock } from '../../../core/clock.ts';
import { silentLogger } from '../../../core/log.ts';
import { parseRepoId, type RepoId } from '../../../core/repo-id.ts';
import { ProcessGitRunner } from '../../src/git/git-runner.ts';
import { newRequestContext } from '../../src/http/request-context.ts';
import { type LfsRepository, LfsService, lfsVerdicts } from '../../src/lfs/lfs-service.ts';
import { LfsMembership } from '../../src/lfs/membership.ts';
import { UpstreamLfs } from '../../src/lfs/upstream-lfs.ts';
import { type LfsKeyring, LfsUrlTokens } from '../../src/lfs/url-token.ts';
import type { SnapshotStore } from '../../src/store/store.ts';
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
    verdicts: lfsVerdicts(systemClock),
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
    await service.handle(req, res, {
      repo: parseRepoId(match[1]!),
      subpath: match[2]!,
      ctx: newRequestContext(),
    });
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
