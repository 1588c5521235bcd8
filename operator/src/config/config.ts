import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { parseArgs } from 'node:util';
import { parseDuration } from '../../../core/duration.ts';
import { OperatorError } from '../errors/operator-error.ts';

export interface OperatorConfig {
  /** Watched namespaces; empty means all. */
  namespaces: string[];
  sidecarAdminPort: number;
  /** Workers per controller. */
  workers: number;
  listen: { host: string; port: number };
  /** Where push webhooks are received; undefined: not at all. */
  webhookListen: { host: string; port: number } | undefined;
  kubeconfig: string | undefined;
  leaderElect: boolean;
  leaseNamespace: string;
  leaseName: string;
  identity: string;
  adminTokenSecret: string;
  resyncMs: number;
  warmupPollMs: number;
  sidecarTimeoutMs: number;
}

interface OptionDef {
  env: string;
  default: (env: NodeJS.ProcessEnv) => string;
  help: string;
}

const SA_NAMESPACE_FILE = '/var/run/secrets/kubernetes.io/serviceaccount/namespace';

/** Every option has a flag (the key) and an environment variable; a flag wins over the variable. */
export const OPTIONS: Record<string, OptionDef> = {
  namespaces: {
    env: 'GITMIRROR_OPERATOR_NAMESPACES',
    default: () => '',
    help: 'comma-separated namespaces to watch; empty: all',
  },
  'sidecar-admin-port': {
    env: 'GITMIRROR_OPERATOR_SIDECAR_ADMIN_PORT',
    default: () => '9090',
    help: 'sidecar admin API port (a container port named gitmirror-admin overrides it per pod)',
  },
  workers: {
    env: 'GITMIRROR_OPERATOR_WORKERS',
    default: () => '4',
    help: 'concurrent reconciles per controller',
  },
  listen: {
    env: 'GITMIRROR_OPERATOR_LISTEN',
    default: () => '0.0.0.0:8081',
    help: 'host:port of /healthz, /readyz and /metrics',
  },
  'webhook-listen': {
    env: 'GITMIRROR_OPERATOR_WEBHOOK_LISTEN',
    default: () => '0.0.0.0:8082',
    help: 'host:port of the push webhook receiver (POST /webhooks); off: none',
  },
  kubeconfig: {
    env: 'GITMIRROR_OPERATOR_KUBECONFIG',
    default: () => '',
    help: 'kubeconfig file; default: in-cluster, else $KUBECONFIG or ~/.kube/config',
  },
  'leader-elect': {
    env: 'GITMIRROR_OPERATOR_LEADER_ELECT',
    default: () => 'true',
    help: 'true|false: elect a leader on a Lease',
  },
  'leader-election-namespace': {
    env: 'GITMIRROR_OPERATOR_LEASE_NAMESPACE',
    default: defaultNamespace,
    help: 'namespace of the Lease; default: POD_NAMESPACE or the service account namespace',
  },
  'leader-election-id': {
    env: 'GITMIRROR_OPERATOR_LEASE_NAME',
    default: () => 'gitmirror-operator',
    help: 'name of the Lease',
  },
  identity: {
    env: 'POD_NAME',
    default: () => `${hostname()}-${process.pid}`,
    help: "this replica's name in the Lease and in Events",
  },
  'admin-token-secret': {
    env: 'GITMIRROR_OPERATOR_ADMIN_TOKEN_SECRET',
    default: () => 'gitmirror-admin-token',
    help: 'name of the per-namespace Secret holding the sidecar admin token',
  },
  resync: { env: 'GITMIRROR_OPERATOR_RESYNC', default: () => '10m', help: 'period of full resyncs' },
  'warmup-poll': {
    env: 'GITMIRROR_OPERATOR_WARMUP_POLL',
    default: () => '5s',
    help: "how often a warming pod's sidecar is polled",
  },
  'sidecar-timeout': {
    env: 'GITMIRROR_OPERATOR_SIDECAR_TIMEOUT',
    default: () => '10s',
    help: 'timeout of one admin API call',
  },
};

function defaultNamespace(env: NodeJS.ProcessEnv): string {
  if (env.POD_NAMESPACE) return env.POD_NAMESPACE;
  try {
    return readFileSync(SA_NAMESPACE_FILE, 'utf8').trim();
  } catch {
    return 'default';
  }
}

export function usage(): string {
  const lines = Object.entries(OPTIONS).map(
    ([flag, o]) => `  --${flag.padEnd(27)} ${o.env.padEnd(40)} ${o.help}`,
  );
  return `usage: node operator/src/main.ts [--flag value ...]\n\n  flag                          environment variable\n${lines.join('\n')}\n`;
}

/** Reads flags and environment, validating everything up front so a bad setting fails at start. */
export function loadConfig(argv: string[], env: NodeJS.ProcessEnv): OperatorConfig {
  let values: Record<string, string | undefined>;
  try {
    const options = Object.fromEntries(Object.keys(OPTIONS).map((k) => [k, { type: 'string' as const }]));
    values = parseArgs({ args: argv, options, strict: true, allowPositionals: false }).values as Record<
      string,
      string
    >;
  } catch (err) {
    throw new OperatorError('CONFIG_INVALID', `${(err as Error).message}\n${usage()}`);
  }
  const get = (flag: string) => {
    const o = OPTIONS[flag]!;
    return values[flag] ?? env[o.env] ?? o.default(env);
  };
  return {
    namespaces: get('namespaces')
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean),
    sidecarAdminPort: integer('sidecar-admin-port', get('sidecar-admin-port'), 1, 65535),
    workers: integer('workers', get('workers'), 1, 64),
    listen: hostPort('listen', get('listen')),
    webhookListen: ['', 'off'].includes(get('webhook-listen'))
      ? undefined
      : hostPort('webhook-listen', get('webhook-listen')),
    kubeconfig: get('kubeconfig') || undefined,
    leaderElect: boolean('leader-elect', get('leader-elect')),
    leaseNamespace: get('leader-election-namespace'),
    leaseName: get('leader-election-id'),
    identity: get('identity'),
    adminTokenSecret: get('admin-token-secret'),
    resyncMs: duration('resync', get('resync'), 10_000),
    warmupPollMs: duration('warmup-poll', get('warmup-poll'), 500),
    sidecarTimeoutMs: duration('sidecar-timeout', get('sidecar-timeout'), 100),
  };
}

function invalid(flag: string, text: string, expected: string): never {
  throw new OperatorError(
    'CONFIG_INVALID',
    `--${flag} (${OPTIONS[flag]!.env}): "${text}" is not ${expected}`,
  );
}

function integer(flag: string, text: string, min: number, max: number): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < min || n > max) invalid(flag, text, `an integer from ${min} to ${max}`);
  return n;
}

function boolean(flag: string, text: string): boolean {
  if (text === 'true' || text === 'false') return text === 'true';
  return invalid(flag, text, 'true or false');
}

function duration(flag: string, text: string, minMs: number): number {
  let ms: number;
  try {
    ms = parseDuration(text, flag);
  } catch {
    return invalid(flag, text, 'a duration such as 5s, 10m or 1h');
  }
  if (ms < minMs) invalid(flag, text, `at least ${minMs} ms`);
  return ms;
}

function hostPort(flag: string, text: string): { host: string; port: number } {
  const match = /^(.*):(\d+)$/.exec(text);
  if (!match) return invalid(flag, text, 'host:port');
  return { host: match[1]!.replace(/^\[(.*)\]$/, '$1'), port: integer(flag, match[2]!, 0, 65535) };
}
