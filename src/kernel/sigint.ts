/**
 * Clearing a SIGINT that Node kept for later. tslab runs each cell with `vm`'s `breakOnSigint`, which starts
 * Node's SIGINT watchdog thread for the run. When a second SIGINT arrives while the first is still stopping the
 * cell (a user pressing interrupt twice), the watchdog thread may exit before it has consumed that signal, and
 * its semaphore keeps it: the next run long enough for the new watchdog thread to wake is interrupted, cells or
 * minutes later (reproduced on Node 20: about one in eight double interrupts on a loaded core).
 */
import * as vm from 'vm';

/** Whether an error is the one a cell ends with when interrupted (a busy loop, or an await tslab abandoned). */
export function isInterruption(e: unknown): boolean {
  if (!(e instanceof Error)) return false;
  return (e as NodeJS.ErrnoException).code === 'ERR_SCRIPT_EXECUTION_INTERRUPTED' || e.message === 'Interrupted asynchronously';
}

/**
 * Runs short busy scripts under the SIGINT watchdog until one finishes uninterrupted, so that a kept SIGINT
 * interrupts one of them instead of a later cell. Each lasts `ms` so the watchdog thread gets scheduled
 * even on a loaded machine. Returns how many kept signals were cleared.
 */
export function drainKeptSigint(ms = 30, tries = 4): number {
  const script = new vm.Script(`{ const until = Date.now() + ${ms}; while (Date.now() < until) {} }`);
  let cleared = 0;
  for (let i = 0; i < tries; i++) {
    try {
      script.runInThisContext({ breakOnSigint: true });
      return cleared;
    } catch (e) {
      if (!isInterruption(e)) throw e;
      cleared++;
    }
  }
  return cleared;
}
