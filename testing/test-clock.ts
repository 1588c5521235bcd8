import type { Clock } from '../core/clock.ts';

/**
 * A clock a test moves by hand. Frozen at `start` when one is given (unit tests), otherwise
 * real time plus whatever the test has skipped (whole sidecars, whose jobs and sockets still
 * need time to pass by itself).
 */
export class TestClock implements Clock {
  private readonly start: number | undefined;
  private skipped = 0;

  constructor(start?: number) {
    this.start = start;
  }

  now(): number {
    return (this.start ?? Date.now()) + this.skipped;
  }

  advance(ms: number): void {
    this.skipped += ms;
  }
}
