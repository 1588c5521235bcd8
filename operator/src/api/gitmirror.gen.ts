// Generated from crds/gitmirror.yaml by operator/scripts/generate-crd-types.ts: do not edit.
// Fields with a schema default are required here because the API server always fills them.

export interface GitMirrorSpec {
  /**
   * Upstream repository URL, http or https, without credentials (they belong in
   * credentialsSecretRef). Immutable.
   */
  url: string;
  /**
   * The fleet that carries this mirror: pods labelled gitmirror.dev/cache=<cache> in this
   * namespace. Immutable.
   */
  cache: string;
  /** How often each replica fetches from upstream, e.g. 5m or 1h30m (at least 30s). */
  fetchInterval: string;
  /** How often the writer replica publishes a snapshot, and how many are kept. */
  snapshot: {
    /** Time between snapshots, e.g. 1h (at least 5m). */
    interval: string;
    /** Snapshots kept in the store (at least 2, so a reader never loses the one it restores). */
    retain: number;
  };
  /**
   * Secret in this namespace with the upstream credentials: key password (or token) and,
   * optionally, username; or a GitHub App, keys githubAppID, githubAppInstallationID,
   * githubAppPrivateKey (PEM) and optionally githubAppBaseURL (GitHub Enterprise Server's API root,
   * default https://api.github.com), from which the operator mints installation tokens and hands
   * them to the fleet.
   */
  credentialsSecretRef?: {
    name: string;
  };
  /**
   * Secret in this namespace whose key webhookSecret is the secret of the push webhook (GitHub,
   * Gitea or GitLab) for this repository. Deliveries signed with it make every warm replica fetch
   * at once; unsigned or mis-signed ones are refused. It may be the credentials Secret.
   */
  webhookSecretRef?: {
    name: string;
  };
  /**
   * Private: a client is served only once upstream accepts its credentials. Public: anyone who
   * reaches the cache. Unset: Private with credentialsSecretRef, else Public.
   */
  access?: 'Private' | 'Public';
  /** How long a new replica may take to restore this mirror before it takes traffic. */
  warmup: {
    /** Time from pod start after which onTimeout applies, e.g. 10m (at least 30s). */
    timeout: string;
    /**
     * Open: the replica takes traffic anyway (reason WarmupTimeout) and keeps warming. Closed: it
     * stays out of service until the mirror is ready.
     */
    onTimeout: 'Open' | 'Closed';
  };
  /** Git LFS objects of this repository, which the fleet always serves from its cache. */
  lfs: {
    /**
     * Which LFS objects the writer replica downloads after each fetch, so the first job after a
     * push finds them cached: Head (those HEAD's tree points to), AllRefs (those of every branch
     * and tag), None (only what clients ask for).
     */
    prefetch: 'Head' | 'AllRefs' | 'None';
  };
}

export interface GitMirrorStatus {
  /** The spec generation this status describes. */
  observedGeneration?: number;
  /**
   * Ready, Reconciling, Stalled, Fresh and (with credentials) CredentialsReady, each with the
   * generation it describes.
   */
  conditions?: Array<{
    type: string;
    status: 'True' | 'False' | 'Unknown';
    observedGeneration?: number;
    lastTransitionTime: string;
    reason: string;
    message: string;
  }>;
  /** The mirror's id in the cache, host/path as in the clone URL. */
  repository?: string;
  /** Commit of HEAD in the freshest replica. */
  head?: string;
  /** Newest successful fetch from upstream among the replicas. */
  lastFetchTime?: string;
  /** The newest snapshot published for this repository. */
  latestSnapshot?: {
    key: string;
    commit: string;
    createdAt: string;
    sizeBytes: number;
  };
  /** Fleet pods that should carry this mirror, and those that serve it from local data. */
  replicas?: {
    total: number;
    warm: number;
  };
  /** The pod that publishes this mirror's snapshots; empty while no replica is warm. */
  writer?: string;
  /**
   * The installation token the operator minted for the fleet, when the credentials are a GitHub
   * App.
   */
  githubApp?: {
    /** When the token the fleet holds expires. */
    tokenExpiresTime?: string;
    /** When the operator replaces it (well before it expires), or retries a failed mint. */
    refreshTime?: string;
    /** When the operator last received a token from GitHub. */
    lastMintTime?: string;
  };
  /** The last push webhook delivery verified for this mirror (written by the receiver). */
  webhook?: {
    lastDeliveryTime?: string;
    /** X-GitHub-Delivery (or the forge's equivalent); a redelivery has the same id. */
    lastDeliveryID?: string;
    /** The event, e.g. push, create, delete, Push Hook. */
    lastEvent?: string;
  };
}
