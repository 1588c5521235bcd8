import { randomBytes } from 'node:crypto';
import { isOperatorError, OperatorError } from '../errors/operator-error.ts';
import type { KubeApi } from '../kube/api.ts';

/** Key of the token inside the per-namespace Secret; fleet pods mount it as GITMIRROR_ADMIN_TOKEN_FILE. */
export const TOKEN_KEY = 'token';

/**
 * The bearer token for the sidecars of one namespace, kept in a Secret the operator creates on
 * first need. Tokens are cached per namespace; the Secret stays the source of truth, so a new
 * leader reads the same token.
 */
export class AdminTokens {
  readonly #api: Pick<KubeApi, 'readSecret' | 'createSecret'>;
  readonly #secretName: string;
  readonly #cache = new Map<string, string>();

  constructor(api: Pick<KubeApi, 'readSecret' | 'createSecret'>, secretName: string) {
    this.#api = api;
    this.#secretName = secretName;
  }

  get secretName(): string {
    return this.#secretName;
  }

  /** The namespace's token, creating its Secret when there is none. */
  async ensure(namespace: string): Promise<string> {
    const cached = this.#cache.get(namespace);
    if (cached) return cached;
    const token = (await this.#read(namespace)) ?? (await this.#create(namespace));
    this.#cache.set(namespace, token);
    return token;
  }

  /** Drops the cached token, e.g. after a sidecar refused it because the Secret was replaced. */
  invalidate(namespace: string): void {
    this.#cache.delete(namespace);
  }

  async #read(namespace: string): Promise<string | undefined> {
    const data = await this.#api.readSecret(namespace, this.#secretName);
    if (data === undefined) return undefined;
    const token = data[TOKEN_KEY];
    if (!token) {
      throw new OperatorError(
        'CREDENTIALS_INVALID',
        `secret ${namespace}/${this.#secretName} has no "${TOKEN_KEY}" key; delete it and the operator will create a new one`,
      );
    }
    return token;
  }

  async #create(namespace: string): Promise<string> {
    const token = randomBytes(32).toString('base64url');
    try {
      await this.#api.createSecret(
        namespace,
        this.#secretName,
        { [TOKEN_KEY]: token },
        {
          'app.kubernetes.io/managed-by': 'gitmirror-operator',
        },
      );
      return token;
    } catch (err) {
      // Another leader (or our previous life) created it between our read and create.
      if (!isOperatorError(err, 'KUBE_ALREADY_EXISTS')) throw err;
      const existing = await this.#read(namespace);
      if (!existing) throw err;
      return existing;
    }
  }
}
