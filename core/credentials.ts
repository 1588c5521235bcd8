/** Upstream credentials as the operator sends them and the sidecar uses them. */
export interface Credentials {
  /** Optional: a token alone is enough for the common hosts; see `withUsername`. */
  username?: string;
  password: string;
  /**
   * When the password stops working (RFC 3339), for tokens that expire, such as GitHub App
   * installation tokens the operator mints. The sidecar starts no git command whose requests
   * could still be going out after this, and waits for the next PUT instead.
   */
  expiresAt?: string;
}

/**
 * The user name sent with a bare token. Hosts that take tokens accept any user name with them;
 * this is the one GitHub documents for app and Actions tokens.
 */
export const TOKEN_USERNAME = 'x-access-token';

/** Credentials with a user name, `TOKEN_USERNAME` for a bare token. */
export function withUsername(credentials: Credentials): Credentials & { username: string } {
  return { ...credentials, username: credentials.username || TOKEN_USERNAME };
}
