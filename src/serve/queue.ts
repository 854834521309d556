/** A first-in first-out job queue running one job at a time (tfjs here runs one generation at a time). */
import { ApiError } from './openai';

/**
 * Runs jobs one after another in arrival order; never drops one. With `maxWaiting`, a job arriving while
 * that many already wait is refused with a 429 {@link ApiError}.
 *
 * @example
 * const q = new JobQueue();
 * const [a, b] = await Promise.all([q.run(async () => 1), q.run(async () => 2)]); // b starts after a ends
 */
export class JobQueue {
  private tail: Promise<unknown> = Promise.resolve();
  private inFlight = 0;

  constructor(readonly maxWaiting = Infinity) {}

  /** Jobs queued or running. */
  get size(): number {
    return this.inFlight;
  }

  run<T>(job: () => Promise<T>): Promise<T> {
    // inFlight counts the running job too, so "waiting" is inFlight - 1 once something runs.
    if (this.inFlight > this.maxWaiting) {
      return Promise.reject(new ApiError(429, `server busy: ${this.inFlight - 1} requests already waiting (limit ${this.maxWaiting}); retry later`, null, 'queue_full', 'rate_limit_exceeded'));
    }
    this.inFlight++;
    const result = this.tail.then(job).finally(() => { this.inFlight--; });
    // A failed job must not stop the ones behind it.
    this.tail = result.catch(() => undefined);
    return result;
  }
}
