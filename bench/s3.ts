import { createReadStream } from 'node:fs';
import { access, constants, readdir } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { Upload } from '@aws-sdk/lib-storage';
import { ensureTools, TOOLS, toolsCacheDir } from '../e2e/tools/ensure-tools.ts';
import { type S3Server, startS3Server } from '../testing/s3-server.ts';

/**
 * A real S3 server for the cold-start-from-S3 figure: the end-to-end suite's MinIO, built
 * from the Go module proxy by e2e/tools/ensure-tools.ts and cached per machine.
 *
 *   build  build MinIO if the cache lacks it (a few minutes, once per machine)
 *   auto   use it only if it is already built (quick runs and the bench test)
 *   off    no S3 figure
 */
export type S3Mode = 'build' | 'auto' | 'off';

export interface BenchS3 {
  /** Environment for a sidecar whose store is the seeded bucket. */
  sidecarEnv: Record<string, string>;
  stop(): Promise<void>;
}

const BUCKET = 'gitmirror-bench';
const PREFIX = 'snapshots';

async function minioBinary(mode: S3Mode): Promise<string | { skipped: string }> {
  if (mode === 'off') return { skipped: 'S3 disabled (--s3 off)' };
  if (process.env.GITMIRROR_E2E_MINIO) return process.env.GITMIRROR_E2E_MINIO;
  if (mode === 'build') return (await ensureTools(['minio'])).minio!;
  const cached = join(toolsCacheDir(), `minio-${TOOLS.minio!.version}`, 'bin', TOOLS.minio!.binary);
  const built = await access(cached, constants.X_OK).then(
    () => true,
    () => false,
  );
  return built
    ? cached
    : { skipped: `MinIO is not built yet (--s3 auto); run with --s3 build or npm run e2e once` };
}

/**
 * Starts MinIO and copies every object of the filesystem store into a bucket under the
 * same keys: the file store's layout is the S3 layout, so the sidecar sees the very same
 * manifest and archive.
 */
export async function startSeededS3(
  mode: S3Mode,
  fileStoreRoot: string,
): Promise<BenchS3 | { skipped: string }> {
  const binary = await minioBinary(mode);
  if (typeof binary !== 'string') return binary;
  process.env.GITMIRROR_E2E_MINIO = binary;
  const server = await startS3Server();
  try {
    await server.createBucket(BUCKET);
    for (const file of await filesUnder(fileStoreRoot))
      await upload(server, file, relative(fileStoreRoot, file));
  } catch (err) {
    await server.stop();
    throw err;
  }
  return {
    sidecarEnv: {
      GITMIRROR_SNAPSHOT_STORE: `s3://${BUCKET}/${PREFIX}?forcePathStyle=true`,
      AWS_ENDPOINT_URL_S3: server.endpoint,
      AWS_ACCESS_KEY_ID: server.accessKeyId,
      AWS_SECRET_ACCESS_KEY: server.secretAccessKey,
      AWS_REGION: server.region,
    },
    stop: () => server.stop(),
  };
}

async function upload(server: S3Server, file: string, key: string): Promise<void> {
  await new Upload({
    client: server.client,
    params: { Bucket: BUCKET, Key: `${PREFIX}/${key}`, Body: createReadStream(file) },
    partSize: 16 * 1024 * 1024,
  }).done();
}

async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
}
