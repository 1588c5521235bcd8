import { TOKEN_USERNAME } from '../../../core/credentials.ts';
import type { GitHubApp } from '../../../github/src/app.ts';
import { isGitHubError } from '../../../github/src/errors.ts';
import type { InstallationTokens } from '../../../github/src/token-cache.ts';
import { GitMirrorError } from '../errors/gitmirror-error.ts';
import { type CredentialSource, type Credentials, validityNeeded } from './credentials.ts';

/**
 * A standalone sidecar's GitHub App (GITMIRROR_GITHUB_APP_FILE): each command gets an
 * installation token that outlasts its requests, minted when the one held would not (or is
 * due for its refresh). Commands of all mirrors share the token and its single mint.
 */
export class AppTokenCredentials implements CredentialSource {
  readonly #tokens: InstallationTokens;
  readonly #app: GitHubApp;
  readonly #requestBoundMs: number;

  constructor(tokens: InstallationTokens, app: GitHubApp, options: { requestBoundMs: number }) {
    this.#tokens = tokens;
    this.#app = app;
    this.#requestBoundMs = options.requestBoundMs;
  }

  async forCommand(timeoutMs: number): Promise<Credentials> {
    try {
      const minValidityMs = validityNeeded(timeoutMs, this.#requestBoundMs);
      const { token } = await this.#tokens.get(this.#app, { minValidityMs });
      return { username: TOKEN_USERNAME, password: token };
    } catch (err) {
      if (!isGitHubError(err)) throw err;
      // GitHub's message says what is wrong (a wrong key, an uninstalled App); it holds no secret.
      throw new GitMirrorError(
        'CREDENTIALS_UNAVAILABLE',
        `no GitHub App token: ${err.code}: ${err.message}`,
        {
          cause: err,
        },
      );
    }
  }
}
