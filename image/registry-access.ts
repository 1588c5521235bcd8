/**
 * What the Dockerfile's `npm ci` needs to reach the npm registry from this machine, handed to
 * the build as secrets (`--secret id=...`), which buildah and BuildKit mount for one RUN step
 * only and never write into a layer:
 * - `npm-ca`: the CA bundle npm trusts here (npm's `cafile`, else `NODE_EXTRA_CA_CERTS`, else
 *   the system bundle). Behind a TLS-inspecting proxy the registry's certificate is signed by a
 *   CA that only this bundle has; the build stage has no CA bundle of its own at all.
 * - `npmrc`: the user's npmrc (registry, scopes, tokens), when there is one.
 * The Dockerfile uses each only if it is there, so `docker build` without secrets still works
 * wherever the public registry is reachable directly.
 */

export interface BuildSecret {
  id: 'npm-ca' | 'npmrc';
  src: string;
}

export interface RegistryAccessFacts {
  /** `npm config get cafile` ('null' or '' when unset). */
  npmCafile: string;
  /** `npm config get userconfig`. */
  npmUserconfig: string;
  env: NodeJS.ProcessEnv;
  exists(path: string): boolean;
}

export const SYSTEM_CA_BUNDLE = '/etc/ssl/certs/ca-certificates.crt';

export function registrySecrets(facts: RegistryAccessFacts): BuildSecret[] {
  const set = (value: string | undefined) =>
    value && value !== 'null' && value !== 'undefined' ? value : undefined;
  const ca = [set(facts.npmCafile), set(facts.env.NODE_EXTRA_CA_CERTS), SYSTEM_CA_BUNDLE].find(
    (path) => path !== undefined && facts.exists(path),
  );
  const secrets: BuildSecret[] = [];
  if (ca) secrets.push({ id: 'npm-ca', src: ca });
  const userconfig = set(facts.npmUserconfig);
  if (userconfig && facts.exists(userconfig)) secrets.push({ id: 'npmrc', src: userconfig });
  return secrets;
}
