/**
 * Stopping a training run at a step boundary instead of killing it mid-step: Ctrl-C in a script, the
 * interrupt button in a notebook. A stopped {@link Trainer} finishes its current step, writes a resumable
 * `checkpoint-<step>` when it has an `outDir` and a checkpoint writer, and returns a result marked
 * `interrupted: true` with the model intact in memory.
 *
 * The set of running trainers lives on `globalThis` (under a `Symbol.for` key) rather than in this module:
 * the Jupyter kernel and the notebook's `import 'tunelab'` may load two copies of this file, and an
 * interrupt must reach the trainer either way. Nothing is registered at import time.
 */

/** Something that can be asked to stop after its current step (a trainer while it trains). */
export interface Stoppable {
  /** Asks the run to stop at the next step boundary. */
  stop(): void;
  /** Whether {@link stop} was called and the run has not returned yet. */
  readonly stopRequested: boolean;
}

const runningKey = Symbol.for('tunelab.running-trainers');

function running(): Set<Stoppable> {
  let set = Reflect.get(globalThis, runningKey) as Set<Stoppable> | undefined;
  if (!set) {
    set = new Set();
    Reflect.set(globalThis, runningKey, set);
  }
  return set;
}

/**
 * Registers a run as training until the returned function is called (trainers do this around their loop),
 * so that {@link requestStop} reaches it.
 */
export function trackRun(run: Stoppable): () => void {
  running().add(run);
  return () => {
    running().delete(run);
  };
}

/**
 * Asks every running trainer that has not been asked yet to stop after its current step. Returns true when
 * at least one was asked; false when none is training or all were asked already, which is the host's cue to
 * interrupt the hard way (the Jupyter kernel then aborts the cell).
 *
 * @example
 * process.on('SIGINT', () => { if (!requestStop()) executor.interrupt(); });
 */
export function requestStop(): boolean {
  let asked = false;
  for (const run of running()) {
    if (run.stopRequested) continue;
    run.stop();
    asked = true;
  }
  return asked;
}

/** Callbacks of {@link stopOnSignal}. */
export interface StopOnSignalHandlers {
  /** After the first signal, once the run was asked to stop (e.g. print "stopping after step N"). */
  onStop?: () => void;
  /** After a second signal: the caller gives up waiting (default: exit with 130, the shell's code for SIGINT). */
  onForce?: () => void;
}

/**
 * For scripts: the first `signal` asks `run` to stop at the step boundary, a second one calls `onForce`.
 * Installing a listener replaces Node's default exit on SIGINT; the returned function removes it again,
 * restoring the default. Install it only while training.
 *
 * @example
 * const release = stopOnSignal(trainer, { onStop: () => console.error('stopping after this step…') });
 * try { result = await trainer.train(); } finally { release(); }
 */
export function stopOnSignal(run: Stoppable, handlers: StopOnSignalHandlers = {}, signal: NodeJS.Signals = 'SIGINT'): () => void {
  let count = 0;
  const listener = () => {
    count++;
    if (count === 1) {
      run.stop();
      handlers.onStop?.();
    } else if (handlers.onForce) handlers.onForce();
    else process.exit(130);
  };
  process.on(signal, listener);
  return () => {
    process.off(signal, listener);
  };
}
