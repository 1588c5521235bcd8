import type { Clock } from '../../../core/clock.ts';
import type { Logger } from '../../../core/log.ts';
import type { InstallationTokens } from '../../../github/src/token-cache.ts';
import type { KubeApi, Stores } from '../kube/api.ts';
import type { EventRecorder } from '../runtime/events.ts';
import type { SidecarClient } from '../sidecar/admin-client.ts';
import type { AdminTokens } from '../sidecar/admin-token.ts';
import type { AppliedSpecs } from './mirror-sync.ts';

/** What both reconcilers are built from: the seams to Kubernetes, the sidecars and time. */
export interface FleetContext {
  api: KubeApi;
  stores: Stores;
  sidecars: SidecarClient;
  tokens: AdminTokens;
  applied: AppliedSpecs;
  /** GitHub App installation tokens, one per installation for every GitMirror that uses it. */
  githubTokens: InstallationTokens;
  events: EventRecorder;
  clock: Clock;
  logger: Logger;
}
