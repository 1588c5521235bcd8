import type { Container, EnvVar, Pod } from './pod-types.ts';

/**
 * A container's environment as the kubelet builds it: the image's ENV, then the service
 * variables (only the API server's: there is no kube-proxy, so KUBERNETES_SERVICE_HOST/PORT
 * name the API server's real address on the pod network instead of the `kubernetes` Service's
 * ClusterIP), then `envFrom`, then `env` in order with `$(VAR)` expansion over what came before.
 */

export interface ObjectSource {
  secret(name: string): Promise<Record<string, string> | undefined>;
  configMap(name: string): Promise<Record<string, string> | undefined>;
}

export interface EnvContext {
  pod: Pod;
  podIp: string;
  hostIp: string;
  imageEnv: Record<string, string>;
  apiserver: { host: string; port: number };
  objects: ObjectSource;
}

export class MissingReferenceError extends Error {}

export async function containerEnv(container: Container, ctx: EnvContext): Promise<Record<string, string>> {
  const env: Record<string, string> = { ...ctx.imageEnv, HOSTNAME: ctx.pod.metadata.name };
  Object.assign(env, serviceEnv(ctx.apiserver));
  for (const source of container.envFrom ?? []) {
    const ref = source.secretRef ?? source.configMapRef;
    if (!ref) continue;
    const data = source.secretRef
      ? await ctx.objects.secret(ref.name)
      : await ctx.objects.configMap(ref.name);
    if (!data) {
      if (ref.optional) continue;
      throw new MissingReferenceError(`${source.secretRef ? 'secret' : 'configmap'} "${ref.name}" not found`);
    }
    for (const [key, value] of Object.entries(data)) env[`${source.prefix ?? ''}${key}`] = value;
  }
  for (const variable of container.env ?? []) {
    const value = await envValue(variable, container, ctx, env);
    if (value !== undefined) env[variable.name] = value;
  }
  return env;
}

function serviceEnv(apiserver: { host: string; port: number }): Record<string, string> {
  const { host, port } = apiserver;
  return {
    KUBERNETES_SERVICE_HOST: host,
    KUBERNETES_SERVICE_PORT: String(port),
    KUBERNETES_SERVICE_PORT_HTTPS: String(port),
    KUBERNETES_PORT: `tcp://${host}:${port}`,
    [`KUBERNETES_PORT_${port}_TCP`]: `tcp://${host}:${port}`,
    [`KUBERNETES_PORT_${port}_TCP_PROTO`]: 'tcp',
    [`KUBERNETES_PORT_${port}_TCP_PORT`]: String(port),
    [`KUBERNETES_PORT_${port}_TCP_ADDR`]: host,
  };
}

async function envValue(
  variable: EnvVar,
  container: Container,
  ctx: EnvContext,
  defined: Record<string, string>,
): Promise<string | undefined> {
  if (variable.value !== undefined) return expand(variable.value, defined);
  const from = variable.valueFrom;
  if (!from) return '';
  if (from.fieldRef) return fieldValue(from.fieldRef.fieldPath, ctx);
  if (from.resourceFieldRef) return resourceValue(from.resourceFieldRef, container, ctx.pod);
  const ref = from.secretKeyRef ?? from.configMapKeyRef;
  if (!ref) return '';
  const kind = from.secretKeyRef ? 'secret' : 'configmap';
  const data = from.secretKeyRef ? await ctx.objects.secret(ref.name) : await ctx.objects.configMap(ref.name);
  const value = data?.[ref.key];
  if (value === undefined) {
    if (ref.optional) return undefined;
    throw new MissingReferenceError(
      data ? `couldn't find key ${ref.key} in ${kind} ${ref.name}` : `${kind} "${ref.name}" not found`,
    );
  }
  return value;
}

/** `$(NAME)` → its value when defined so far, `$$` → `$`, anything else is kept verbatim. */
export function expand(text: string, defined: Record<string, string>): string {
  return text.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, (match, name: string | undefined) => {
    if (match === '$$') return '$';
    return name !== undefined && name in defined ? defined[name]! : match;
  });
}

export function fieldValue(path: string, ctx: { pod: Pod; podIp: string; hostIp: string }): string {
  const { pod } = ctx;
  const keyed = /^metadata\.(labels|annotations)\['(.+)'\]$/.exec(path);
  if (keyed) return pod.metadata[keyed[1] as 'labels' | 'annotations']?.[keyed[2]!] ?? '';
  switch (path) {
    case 'metadata.name':
      return pod.metadata.name;
    case 'metadata.namespace':
      return pod.metadata.namespace ?? 'default';
    case 'metadata.uid':
      return pod.metadata.uid;
    case 'spec.nodeName':
      return pod.spec.nodeName ?? '';
    case 'spec.serviceAccountName':
      return pod.spec.serviceAccountName ?? 'default';
    case 'status.podIP':
    case 'status.podIPs':
      return ctx.podIp;
    case 'status.hostIP':
    case 'status.hostIPs':
      return ctx.hostIp;
    default:
      throw new Error(`unsupported fieldRef ${path}`);
  }
}

const UNITS: Record<string, number> = {
  '': 1,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  Ki: 1024,
  Mi: 1024 ** 2,
  Gi: 1024 ** 3,
  Ti: 1024 ** 4,
  m: 1e-3,
};

export function quantity(text: string): number {
  const match = /^([0-9.]+)([a-zA-Z]*)$/.exec(text);
  const unit = match ? UNITS[match[2]!] : undefined;
  if (!match || unit === undefined) throw new Error(`unsupported quantity ${text}`);
  return Number(match[1]) * unit;
}

/**
 * `limits.memory` etc.; an unset limit reads as the node's allocatable, as on a real node
 * (here a fixed large number), rounded up to the divisor.
 */
export function resourceValue(
  ref: { containerName?: string; resource: string; divisor?: string },
  container: Container,
  pod: Pod,
): string {
  const target = ref.containerName
    ? pod.spec.containers.find((c) => c.name === ref.containerName)
    : container;
  const [kind, resource] = ref.resource.split('.') as ['limits' | 'requests', string];
  const raw = target?.resources?.[kind]?.[resource];
  const fallback = resource === 'cpu' ? '64' : '256Gi';
  const value = quantity(raw ?? (kind === 'limits' ? fallback : '0'));
  const divisor = quantity(ref.divisor ?? '1');
  return String(Math.ceil(value / divisor));
}
