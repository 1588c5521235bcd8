/** Upstream credentials as the operator sends them and the sidecar uses them. */
export interface Credentials {
  /** Optional: a token alone is enough for the common hosts; see `withUsername`. */
  username?: string;
  password: string;
}

/**
 * The user name sent with a bare token. Hosts that take tokens accept any user name with them;
 * this is the one GitHub documents for app and Actions tokens.
 */
export const TOKEN_USERNAME = 'x-access-token';

/** Credentials with a user name, `TOKEN_USERNAME` for a bare token. */
export function withUsername(credentials: Credentials): Required<Credentials> {
  return { username: credentials.username || TOKEN_USERNAME, password: credentials.password };
}
