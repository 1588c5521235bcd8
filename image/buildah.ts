import { ExecError, exec } from './exec.ts';

/**
 * The machine's local containers storage, through buildah (what `buildah images` and `podman
 * images` list). Builds run with chroot isolation: no OCI runtime is involved, so nothing depends
 * on the host's cgroup setup (crun, podman's default, fails on some), and a RUN step shares the
 * host's network, which is how the build reaches the package registries.
 */

export const ISOLATION = ['--isolation', 'chroot'];

/** An image's OCI configuration, as the runtime reads it. */
export interface ImageConfig {
  User?: string;
  Env?: string[];
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  WorkingDir?: string;
  Labels?: Record<string, string> | null;
  ExposedPorts?: Record<string, unknown>;
}

export interface ImageInfo {
  /** The image ID: the digest of its configuration, without `sha256:`. */
  id: string;
  config: ImageConfig;
  labels: Record<string, string>;
}

export function buildah(
  args: string[],
  options: { timeoutMs?: number; echo?: string } = {},
): Promise<string> {
  return exec('buildah', args, { timeoutMs: options.timeoutMs ?? 120_000, echo: options.echo });
}

/** The image `ref` names in local storage, or undefined when there is none. */
export async function inspectImage(ref: string): Promise<ImageInfo | undefined> {
  let text: string;
  try {
    text = await buildah(['inspect', '--type', 'image', ref]);
  } catch (err) {
    if (err instanceof ExecError && /not known|unknown|no such image|not found/i.test(err.stderr))
      return undefined;
    throw err;
  }
  const raw = JSON.parse(text) as {
    FromImageID: string;
    OCIv1: { config?: ImageConfig };
  };
  const config = raw.OCIv1.config ?? {};
  return { id: raw.FromImageID, config, labels: config.Labels ?? {} };
}

/** Drops an image that a rebuild superseded; one still in use (a cached layer's parent) stays. */
export async function removeImage(id: string): Promise<void> {
  await buildah(['rmi', id]).catch(() => {});
}
