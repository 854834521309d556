/**
 * Live TensorBoard logging for a `Trainer` or `PpoTrainer` (transformers' `TensorBoardCallback`): each step's and eval's
 * metrics go to an event file as they happen, under the same tags `RunLog` writes after a run.
 */
import { SummaryWriter } from '../io/tfevents';
import { evalLogEntry, stepLogEntry, tensorboardScalars, type LogEntry } from '../train/trainer-state';
import type { TrainerEventSource } from '../viz/live';

/**
 * Writes a trainer's metrics to a new event file in `dir` while it trains; the file is closed at the
 * trainer's 'end' (or by calling `close()` on the returned writer, e.g. after an error).
 *
 * @example
 * const tb = tensorboard(trainer, 'runs/x');   // then: tensorboard --logdir runs
 * await trainer.train();
 */
export function tensorboard(trainer: TrainerEventSource, dir: string): SummaryWriter {
  const writer = new SummaryWriter(dir);
  const write = (e: LogEntry) => {
    const now = Date.now() / 1000;
    for (const [tag, value] of Object.entries(tensorboardScalars(e))) writer.addScalar(tag, value, e.step, now);
  };
  const off = [
    trainer.on('step', (m) => write(stepLogEntry(m))),
    trainer.on('eval', (m) => write(evalLogEntry(m))),
    trainer.on('end', () => writer.close()),
  ];
  // Closed by hand (a run that threw never emits 'end'), the writer also stops listening: a later
  // `train()` of the same trainer must not fail on a closed file.
  const closeFile = writer.close.bind(writer);
  writer.close = () => {
    off.forEach((f) => f());
    closeFile();
  };
  return writer;
}
