import { execFile } from 'node:child_process';
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse, parseAllDocuments } from 'yaml';
import { ensureTools } from '../tools/ensure-tools.ts';

/**
 * Runs the real helm binary on charts/gitmirror. `renderChart` is the hook for end-to-end
 * tests: it returns the manifests `helm install` would apply (CRDs first when asked), as
 * objects ready to be sent to an API server.
 */

export const CHART_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'charts', 'gitmirror');

/**
 * The Kubernetes version templates see. Passed explicitly so a render does not depend on the
 * version baked into the helm binary; kept at the API server the e2e suite runs.
 */
export const KUBE_VERSION = '1.35.4';

export interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; [k: string]: unknown };
  [k: string]: unknown;
}

export interface RenderOptions {
  /** Values, merged over values.yaml (written to a temp file and passed with -f). */
  values?: Record<string, unknown>;
  /** Raw `--set` expressions, e.g. `unknownKey=1`. */
  set?: string[];
  releaseName?: string;
  namespace?: string;
  /** Extra API versions the "cluster" serves, e.g. `monitoring.coreos.com/v1`. */
  apiVersions?: string[];
  kubeVersion?: string;
  /** Put the chart's crds/ first in the output, as `helm install` applies them first. */
  includeCrds?: boolean;
}

export interface HelmResult {
  code: number;
  stdout: string;
  stderr: string;
}

let helmPath: Promise<string> | undefined;

/** The helm binary: from `npm run e2e`'s environment, else built (or found) in the tools cache. */
export function helmBinary(): Promise<string> {
  helmPath ??= process.env.GITMIRROR_E2E_HELM
    ? Promise.resolve(process.env.GITMIRROR_E2E_HELM)
    : ensureTools(['helm']).then((paths) => paths.helm!);
  return helmPath;
}

/** Runs helm with throwaway config, cache and data dirs, so nothing from the user's helm leaks in. */
export async function helm(args: string[]): Promise<HelmResult> {
  const binary = await helmBinary();
  const home = await mkdtemp(join(tmpdir(), 'gitmirror-helm-'));
  try {
    const env = {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: home,
      HELM_CACHE_HOME: join(home, 'cache'),
      HELM_CONFIG_HOME: join(home, 'config'),
      HELM_DATA_HOME: join(home, 'data'),
      // No cluster: template and lint must never reach one.
      KUBECONFIG: join(home, 'no-kubeconfig'),
    };
    return await new Promise<HelmResult>((done, fail) => {
      execFile(
        binary,
        args,
        { env, maxBuffer: 64 * 1024 * 1024, timeout: 120_000 },
        (err, stdout, stderr) => {
          if (err && typeof err.code !== 'number') fail(err);
          else done({ code: err ? Number(err.code) : 0, stdout, stderr });
        },
      );
    });
  } finally {
    await rm(home, { recursive: true, force: true });
  }
}

/** `helm template` arguments for the options, with a values file written to `dir`. */
async function templateArgs(options: RenderOptions, dir: string, chart = CHART_DIR): Promise<string[]> {
  const args = [
    'template',
    options.releaseName ?? 'gitmirror',
    chart,
    '--namespace',
    options.namespace ?? 'gitmirror-system',
    '--kube-version',
    options.kubeVersion ?? KUBE_VERSION,
  ];
  if (options.includeCrds) args.push('--include-crds');
  for (const version of options.apiVersions ?? []) args.push('--api-versions', version);
  if (options.values) {
    const file = join(dir, 'values.json');
    // JSON is YAML, and it round-trips every value type exactly.
    await writeFile(file, JSON.stringify(options.values));
    args.push('--values', file);
  }
  for (const expression of options.set ?? []) args.push('--set', expression);
  return args;
}

/** Runs `helm template`; the result carries helm's exit code and messages for failure tests. */
export async function templateChart(options: RenderOptions = {}): Promise<HelmResult> {
  const dir = await mkdtemp(join(tmpdir(), 'gitmirror-values-'));
  try {
    return await helm(await templateArgs(options, dir));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The manifests `helm install` would apply with these options; throws with helm's message on failure. */
export async function renderChart(options: RenderOptions = {}): Promise<Manifest[]> {
  const result = await templateChart(options);
  if (result.code !== 0) throw new Error(`helm template failed (exit ${result.code}): ${result.stderr}`);
  return parseManifests(result.stdout);
}

/**
 * NOTES.txt as `helm install` would print it. `helm template` leaves it out, so a copy of the
 * chart gets one more template that includes it into a ConfigMap.
 */
export async function renderNotes(options: RenderOptions = {}): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'gitmirror-notes-'));
  try {
    const chart = join(dir, 'chart');
    await cp(CHART_DIR, chart, { recursive: true });
    const show = 'templates/zz-notes.yaml';
    await writeFile(
      join(chart, show),
      'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\n' +
        'data: {notes: {{ include "gitmirror/templates/NOTES.txt" . | quote }}}\n',
    );
    const result = await helm([...(await templateArgs(options, dir, chart)), '--show-only', show]);
    if (result.code !== 0) throw new Error(`helm template failed (exit ${result.code}): ${result.stderr}`);
    return parse(result.stdout).data.notes;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export function parseManifests(text: string): Manifest[] {
  return parseAllDocuments(text)
    .map((doc) => {
      if (doc.errors.length > 0) throw new Error(`rendered YAML does not parse: ${doc.errors[0]!.message}`);
      return doc.toJS() as Manifest | null;
    })
    .filter((m): m is Manifest => m !== null);
}

/** Finds exactly one manifest of a kind (and name, when given), failing loudly otherwise. */
export function one(manifests: Manifest[], kind: string, name?: string): Manifest {
  const found = manifests.filter((m) => m.kind === kind && (name === undefined || m.metadata.name === name));
  if (found.length !== 1) {
    const present = manifests.map((m) => `${m.kind}/${m.metadata.name}`).join(', ');
    throw new Error(`expected one ${kind}${name ? `/${name}` : ''}, found ${found.length} among: ${present}`);
  }
  return found[0]!;
}
