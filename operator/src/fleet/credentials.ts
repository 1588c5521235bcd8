import type { Credentials } from '../../../core/credentials.ts';
import type { GitMirror } from '../api/gitmirror.ts';
import { OperatorError } from '../errors/operator-error.ts';
import type { KubeApi } from '../kube/api.ts';

/**
 * The upstream credentials a GitMirror names, read fresh on every reconcile (Secrets are not
 * watched: the operator may not list Secrets). Errors name the Secret and the keys, never a value.
 */
export async function readCredentials(
  api: Pick<KubeApi, 'readSecret'>,
  gm: GitMirror,
): Promise<Credentials | undefined> {
  const ref = gm.spec.credentialsSecretRef;
  if (!ref) return undefined;
  const namespace = gm.metadata.namespace ?? '';
  const data = await api.readSecret(namespace, ref.name);
  if (!data) {
    throw new OperatorError('CREDENTIALS_NOT_FOUND', `secret ${namespace}/${ref.name} does not exist`);
  }
  const password = data.password || data.token;
  if (!password) {
    throw new OperatorError(
      'CREDENTIALS_INVALID',
      `secret ${namespace}/${ref.name} has neither a "password" nor a "token" key`,
    );
  }
  return data.username ? { username: data.username, password } : { password };
}
