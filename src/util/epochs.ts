/**
 * The order in which a batch source visits its n items: a seeded shuffle, redrawn each epoch, and a
 * position (epoch, cursor) that saves in checkpoints and restores, so a resumed run sees the same batches.
 * Every training batch source (token windows, SFT examples, preference pairs) draws from one of these.
 */
import { Rng } from './rng';

export class EpochOrder {
  epoch = 0;
  cursor = 0;
  private order: number[] = [];

  /** @param n items per epoch (> 0); @param seed the data-order seed; @param what names the source in errors */
  constructor(readonly n: number, readonly seed: number, private readonly what: string) {
    if (!(Number.isInteger(n) && n > 0)) throw new Error(`${what}: nothing to draw batches from (${n} items)`);
    this.shuffle();
  }

  private shuffle(): void {
    this.order = new Rng(this.seed * 1000003 + this.epoch).shuffle(Array.from({ length: this.n }, (_, i) => i));
  }

  /** The next `k` item indices, starting a new reshuffled epoch whenever one runs out. */
  take(k: number): number[] {
    const picked: number[] = [];
    while (picked.length < k) {
      if (this.cursor >= this.n) {
        this.epoch++;
        this.cursor = 0;
        this.shuffle();
      }
      picked.push(this.order[this.cursor++]);
    }
    return picked;
  }

  state(): { epoch: number; cursor: number } {
    return { epoch: this.epoch, cursor: this.cursor };
  }

  restore(state: unknown): void {
    const s = state as { epoch?: unknown; cursor?: unknown };
    if (typeof s?.epoch !== 'number' || typeof s?.cursor !== 'number') throw new Error(`${this.what}.restore: state needs numeric epoch and cursor`);
    this.epoch = s.epoch;
    this.cursor = s.cursor;
    this.shuffle();
  }
}
