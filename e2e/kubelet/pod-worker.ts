import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { PodNetwork, PodSandbox } from '../cluster/network.ts';
import type { ContainerLaunch, Mount } from './container-runtime.ts';
import { ContainerWorker } from './container-worker.ts';
import { containerEnv, expand, type ObjectSource } from './env.ts';
import { writeEtcFiles } from './etc-files.ts';
import { commandLine, type NodeImage, sameImage } from './image.ts';
import { kubeletConditions } from './pod-conditions.ts';
import type { Container, ContainerStatus, Pod, PodStatus } from './pod-types.ts';
import { PodVolumes, type VolumeSources } from './volumes.ts';

/**
 * One pod on the test node, from binding to removal: sandbox (network namespace + veth),
 * volumes, init containers in order (native sidecars wait only for their start), then the
 * containers; its status written back as the kubelet writes it; and on deletion the preStop
 * hooks, SIGTERM, SIGKILL at the end of the grace period, cleanup, and the final delete.
 */

export interface PodEnvironment {
  network: PodNetwork;
  /** The one image this node has (any other fails to start, like a failed pull). */
  image: NodeImage;
  apiserver: { host: string; port: number };
  sources(pod: Pod): PodSources;
  /** Writes kubelet-owned status (strategic merge); resolves false when the pod is gone. */
  patchStatus(pod: Pod, status: PodStatus): Promise<boolean>;
  /** The final delete (grace 0, uid precondition). */
  remove(pod: Pod): Promise<void>;
  log(message: string): void;
}

export interface PodSources extends ObjectSource {
  volumes: VolumeSources;
}

const VOLUME_RETRY_MS = 1000;

export class PodWorker {
  private sandbox: PodSandbox | undefined;
  private volumes: PodVolumes | undefined;
  private etcMounts: Mount[] = [];
  private readonly init: ContainerWorker[] = [];
  private readonly regular: ContainerWorker[] = [];
  private terminating: Promise<void> | undefined;
  private gone = false;
  private startTime: string | undefined;
  private lastPatched = '';
  private patching: Promise<void> = Promise.resolve();
  private patchQueued = false;
  /** The last status write error logged, so an API server outage is one line, not one a second. */
  private statusError = '';
  /** Set once the pod was evicted (its emptyDir passed its sizeLimit): the status message. */
  private evicted: string | undefined;
  readonly dir: string;
  private readonly sources: PodSources;

  private pod: Pod;
  private readonly env: PodEnvironment;

  constructor(pod: Pod, env: PodEnvironment, podsDir: string) {
    this.pod = pod;
    this.env = env;
    const { namespace = 'default', name, uid } = pod.metadata;
    this.dir = join(podsDir, `${namespace}_${name}_${uid}`);
    this.sources = env.sources(pod);
  }

  get name(): string {
    return `${this.pod.metadata.namespace}/${this.pod.metadata.name}`;
  }

  get podIp(): string | undefined {
    return this.sandbox?.ip;
  }

  /** Names of the containers started so far (init containers first). */
  containerNames(): string[] {
    return [...this.init, ...this.regular].map((c) => c.spec.name);
  }

  container(name: string): ContainerWorker | undefined {
    return [...this.init, ...this.regular].find((c) => c.spec.name === name);
  }

  /** A newer version of the pod from the watch: recompute Ready (gates may have changed). */
  update(pod: Pod): void {
    this.pod = pod;
    if (pod.metadata.deletionTimestamp) void this.terminate();
    else this.changed();
  }

  async run(): Promise<void> {
    try {
      await mkdir(join(this.dir, 'logs'), { recursive: true });
      this.sandbox = await this.env.network.addPod();
      this.startTime = new Date().toISOString();
      this.changed();
      this.etcMounts = await writeEtcFiles(this.dir, {
        namespace: this.pod.metadata.namespace ?? 'default',
        hostname: this.hostname(),
        ip: this.sandbox.ip,
      });
      await this.setUpVolumes();
      for (const spec of this.pod.spec.initContainers ?? []) {
        if (this.terminating) return;
        await this.runInit(spec);
      }
      for (const spec of this.pod.spec.containers) {
        if (this.terminating) return;
        const worker = this.worker(spec);
        this.regular.push(worker);
        void worker.start();
      }
      this.changed();
    } catch (err) {
      this.env.log(`pod ${this.name}: ${(err as Error).message}`);
    }
  }

  private async setUpVolumes(): Promise<void> {
    const volumes = new PodVolumes(this.pod, join(this.dir, 'volumes'), this.sources.volumes, {
      podIp: this.sandbox!.ip,
      hostIp: this.env.network.hostIp,
    });
    // Like the kubelet, keep trying until a missing Secret appears (or the pod goes away).
    for (;;) {
      if (this.terminating) return;
      try {
        await volumes.setUp();
        this.volumes = volumes;
        return;
      } catch (err) {
        this.env.log(`pod ${this.name}: volumes: ${(err as Error).message}`);
        await sleep(VOLUME_RETRY_MS);
      }
    }
  }

  async refreshVolumes(): Promise<void> {
    await this.volumes?.refresh().catch((err) => this.env.log(`pod ${this.name}: refresh: ${err.message}`));
  }

  private async runInit(spec: Container): Promise<void> {
    const worker = this.worker(spec);
    this.init.push(worker);
    await worker.start();
    if (spec.restartPolicy === 'Always') {
      await worker.startedOnce;
      return;
    }
    // A regular init container must finish with 0; the pod's restart policy retries it.
    while (!this.terminating && worker.exitCode !== 0) await sleep(200);
  }

  private worker(spec: Container): ContainerWorker {
    return new ContainerWorker(spec, {
      prepare: (container) => this.launch(container),
      podIp: this.sandbox!.ip,
      imageId: `sha256:${this.env.image.id}`,
      changed: () => this.changed(),
      killGraceMs: (this.pod.spec.terminationGracePeriodSeconds ?? 30) * 1000,
    });
  }

  private async launch(spec: Container): Promise<ContainerLaunch> {
    if (!sameImage(spec.image, this.env.image.ref)) {
      throw new Error(`image ${spec.image} is not available on this node (only ${this.env.image.ref} is)`);
    }
    const podSc = this.pod.spec.securityContext ?? {};
    const sc = { ...podSc, ...spec.securityContext };
    const image = this.env.image.config;
    const uid = sc.runAsUser ?? image.user?.uid;
    const gid = sc.runAsGroup ?? image.user?.gid ?? 0;
    if (sc.runAsNonRoot && !uid) throw new Error('container has runAsNonRoot and image will run as root');
    const groups = [podSc.fsGroup, ...(podSc.supplementalGroups ?? [])].filter(
      (g): g is number => g !== undefined,
    );
    const env = await containerEnv(spec, {
      pod: this.pod,
      podIp: this.sandbox!.ip,
      hostIp: this.env.network.hostIp,
      imageEnv: image.env,
      apiserver: this.env.apiserver,
      objects: this.sources,
    });
    // Each start is a new container with a fresh writable layer, as on a node.
    const dir = join(this.dir, 'containers', spec.name);
    await rm(dir, { recursive: true, force: true });
    for (const sub of ['upper', 'work', 'root']) await mkdir(join(dir, sub), { recursive: true });
    return {
      name: `${this.name}/${spec.name}`,
      netns: this.sandbox!.netns,
      hostname: this.hostname(),
      imageRootfs: this.env.image.rootfs,
      dir,
      workdir: spec.workingDir ?? image.workdir,
      argv: commandLine(image, spec.command, spec.args).map((arg) => expand(arg, env)),
      env,
      user: uid === undefined ? undefined : { uid, gid, groups },
      readOnlyRoot: sc.readOnlyRootFilesystem === true,
      mounts: [...this.etcMounts, ...this.mounts(spec)],
      logFile: join(this.dir, 'logs', `${spec.name}.log`),
    };
  }

  private hostname(): string {
    return this.pod.spec.hostname ?? this.pod.metadata.name;
  }

  private mounts(spec: Container): Mount[] {
    return (spec.volumeMounts ?? []).map((m) => {
      if (!this.volumes) throw new Error('volumes are not set up');
      const base = this.volumes.hostPath(m.name);
      return {
        hostPath: m.subPath ? join(base, m.subPath) : base,
        containerPath: m.mountPath,
        readOnly: m.readOnly === true,
      };
    });
  }

  /** Deletion: preStop hooks and SIGTERM in parallel, SIGKILL at the deadline, then removal. */
  terminate(options: { graceSeconds?: number; preStop?: boolean } = {}): Promise<void> {
    this.terminating ??= (async () => {
      const graceSeconds =
        options.graceSeconds ??
        this.pod.metadata.deletionGracePeriodSeconds ??
        this.pod.spec.terminationGracePeriodSeconds ??
        30;
      const deadline = Date.now() + graceSeconds * 1000;
      const preStop = options.preStop ?? true;
      await Promise.all(this.regular.map((c) => c.stop(deadline, preStop)));
      // Native sidecars stop after the main containers, as in the kubelet.
      await Promise.all(this.init.map((c) => c.stop(deadline, preStop)));
      await this.flushStatus();
      await this.release();
      if (!this.gone) await this.env.remove(this.pod).catch((err) => this.env.log(err.message));
    })();
    return this.terminating;
  }

  /**
   * The pod object is gone (force-deleted): like the kubelet for a pod it no longer finds in
   * the API, SIGTERM without preStop hooks and SIGKILL 2 s later.
   */
  async vanish(): Promise<void> {
    this.gone = true;
    await this.terminate({ graceSeconds: 0, preStop: false });
  }

  /**
   * The kubelet's eviction for local storage: an emptyDir past its sizeLimit gets the pod
   * killed, its containers not restarted, and the pod Failed with reason Evicted (its
   * controller then makes a new one). Called on the kubelet's housekeeping interval.
   */
  async enforceStorageLimits(): Promise<void> {
    if (this.evicted || this.terminating || !this.volumes) return;
    const over = await this.volumes.overLimit().catch(() => undefined);
    if (!over || this.evicted) return;
    this.evicted = `Usage of EmptyDir volume "${over.volume}" exceeds the limit "${over.limit}". `;
    this.env.log(`pod ${this.name}: evicted (${over.usedBytes} bytes): ${this.evicted}`);
    for (const c of [...this.regular, ...this.init]) c.crash();
    this.changed();
  }

  /** SIGKILL every container now and do not restart them: a crash, for fail-over tests. */
  crash(): void {
    for (const c of [...this.regular, ...this.init]) c.crash();
  }

  private async release(): Promise<void> {
    for (const c of [...this.regular, ...this.init]) c.crash();
    if (this.sandbox) await this.env.network.removePod(this.sandbox);
    if (!process.env.GITMIRROR_E2E_KEEP) {
      await rm(this.dir, { recursive: true, force: true }).catch(() => {});
    }
  }

  private changed(): void {
    if (this.patchQueued || this.gone) return;
    this.patchQueued = true;
    this.patching = this.patching.then(async () => {
      await sleep(10);
      this.patchQueued = false;
      await this.writeStatus();
    });
  }

  private async flushStatus(): Promise<void> {
    this.changed();
    await this.patching;
  }

  private async writeStatus(): Promise<void> {
    if (this.gone) return;
    const status = this.computeStatus();
    const key = JSON.stringify({ ...status, conditions: status.conditions?.map((c) => [c.type, c.status]) });
    if (key === this.lastPatched) return;
    try {
      if (!(await this.env.patchStatus(this.pod, status))) this.gone = true;
      this.lastPatched = key;
      if (this.statusError) this.env.log(`pod ${this.name}: status written again`);
      this.statusError = '';
    } catch (err) {
      const message = (err as Error).message;
      if (message !== this.statusError) this.env.log(`pod ${this.name}: status: ${message} (retrying)`);
      this.statusError = message;
      setTimeout(() => this.changed(), 1000);
    }
  }

  private computeStatus(): PodStatus {
    const statuses = {
      init: this.init.map((c) => c.status()),
      regular: this.regular.map((c) => c.status()),
    };
    const started = statuses.regular.length > 0 && statuses.regular.some((s) => s.state.running);
    const phase = this.evicted ? 'Failed' : started ? 'Running' : 'Pending';
    const now = new Date().toISOString();
    const hostIp = this.env.network.hostIp;
    return {
      phase,
      ...(this.evicted ? { reason: 'Evicted', message: this.evicted } : {}),
      hostIP: hostIp,
      hostIPs: [{ ip: hostIp }],
      ...(this.sandbox ? { podIP: this.sandbox.ip, podIPs: [{ ip: this.sandbox.ip }] } : {}),
      ...(this.startTime ? { startTime: this.startTime } : {}),
      conditions: kubeletConditions(this.pod, statuses, phase, this.sandbox !== undefined, now),
      containerStatuses: this.withPlaceholders(this.pod.spec.containers, statuses.regular),
      ...(this.pod.spec.initContainers?.length
        ? { initContainerStatuses: this.withPlaceholders(this.pod.spec.initContainers, statuses.init) }
        : {}),
    };
  }

  /** Containers not created yet are reported waiting, as the kubelet reports them. */
  private withPlaceholders(specs: Container[], statuses: ContainerStatus[]): ContainerStatus[] {
    return specs.map(
      (spec) =>
        statuses.find((s) => s.name === spec.name) ?? {
          name: spec.name,
          image: spec.image,
          imageID: '',
          ready: false,
          started: false,
          restartCount: 0,
          state: { waiting: { reason: this.sandbox ? 'PodInitializing' : 'ContainerCreating' } },
          lastState: {},
        },
    );
  }
}
