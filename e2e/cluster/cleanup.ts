/**
 * Teardown that always runs. Steps are undone last-in first-out by `run()` (the normal path,
 * from an `after` hook). Steps that also have a synchronous form run from the process's
 * `exit` event and from SIGINT/SIGTERM, so an interrupted or crashed test still leaves no
 * processes, network namespaces, bridges or temp dirs behind.
 */

interface Step {
  name: string;
  run: () => Promise<void>;
  runSync?: () => void;
  done: boolean;
}

const STEP_TIMEOUT_MS = 60_000;
const registries = new Set<Cleanup>();
let handlersInstalled = false;

function installHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.once('exit', () => {
    for (const registry of registries) registry.runSync();
  });
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      console.error(`e2e: ${signal}: tearing down`);
      for (const registry of registries) registry.runSync();
      process.exit(128 + (signal === 'SIGINT' ? 2 : signal === 'SIGTERM' ? 15 : 1));
    });
  }
}

export class Cleanup {
  private readonly steps: Step[] = [];

  constructor() {
    installHandlers();
    registries.add(this);
  }

  add(name: string, run: () => Promise<void>, runSync?: () => void): void {
    this.steps.push({ name, run, runSync, done: false });
  }

  /** Undoes every step, newest first; one failing step does not stop the others. */
  async run(): Promise<void> {
    const errors: string[] = [];
    for (const step of [...this.steps].reverse()) {
      if (step.done) continue;
      step.done = true;
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error('timed out')), STEP_TIMEOUT_MS);
      });
      try {
        await Promise.race([step.run(), timeout]);
      } catch (err) {
        errors.push(`${step.name}: ${(err as Error).message}`);
        try {
          step.runSync?.();
        } catch {
          // The sync form is the last resort; nothing more to try.
        }
      } finally {
        clearTimeout(timer);
      }
    }
    registries.delete(this);
    if (errors.length > 0) throw new Error(`teardown incomplete: ${errors.join('; ')}`);
  }

  runSync(): void {
    for (const step of [...this.steps].reverse()) {
      if (step.done) continue;
      step.done = true;
      try {
        step.runSync?.();
      } catch (err) {
        console.error(`e2e: teardown step ${step.name} failed: ${(err as Error).message}`);
      }
    }
  }
}
