import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { evaluateTasks, type TaskResult } from '../../src/eval/tasks/evaluate';
import { lastWordTask, realContinuationTask } from '../../src/eval/tasks/shipped';
import { lab } from '../../src/lab/lab';
import { engineReady } from '../helpers';

describe('lab: run.evaluate(tasks) and .track({ tasks })', () => {
  before(engineReady);

  it('a run scores tasks like evaluateTasks; a tracked stage records task scores across the lineage', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tunelab-lab-tasks-'));
    const tasks = [realContinuationTask({ size: 12 }), lastWordTask({ size: 12 })];
    const run = await lab.base('tiny-llama').data(lab.dataset('domain').slice(0, 2)).log(dir).show(false)
      .track({ every: 2, windows: 2, tasks: [tasks[0]], taskLimit: 8 }).pretrain({ maxSteps: 4, seqLen: 32, batchSize: 2 });
    const scored: TaskResult[] = await run.evaluate(tasks, { bootstrapIters: 50 }); // typed by the tasks overload
    assert.deepEqual(scored, evaluateTasks(run.model, run.tokenizer, tasks, { bootstrapIters: 50 }));
    assert.deepEqual(scored.map((r) => r.scores.map((s) => s.metric)), [['acc', 'acc_norm', 'acc_mutual_info'], ['acc', 'perplexity']]);
    const loss: { loss: number } = await run.evaluate(lab.dataset('general', 'heldout').slice(0, 1));
    assert.ok(Number.isFinite(loss.loss), 'data still gives loss and perplexity');

    const rows = run.tracker!.taskRows.filter((r) => r.metric === 'acc');
    assert.deepEqual(rows.map((r) => r.step), [0, 2, 4]);
    // Kept in the run log (tasks.jsonl) and as TensorBoard scalars.
    assert.deepEqual(lab.runs(dir).details(run.record.run).tasks, run.tracker!.taskRows);
    const events = fs.readFileSync(lab.runs(dir).eventFiles(run.record.run)[0]);
    assert.ok(events.includes(Buffer.from('eval/real_continuation_acc_mutual_info')), 'task scalar tag in the event file');
    const next = await run.data(lab.dataset('domain').slice(2, 4)).show(false).track({ every: 4, windows: 2, tasks: [tasks[0]], taskLimit: 8 }).pretrain({ maxSteps: 4, seqLen: 32, batchSize: 2 });
    const [series] = next.taskForgettingSeries('acc');
    assert.equal(series.name, 'real_continuation acc');
    assert.equal(series.tokens.length, 5); // 3 measurements of the first stage, 2 of the second
    assert.equal(series.tokens[3], run.record.tokens, 'the second stage starts where the first ended');
    assert.equal(series.low!.length, 5);
    assert.throws(() => next.taskForgettingSeries('bleu'), /no tracked task scores for "bleu"; add \.track\(\{ tasks \}\)/);
    run.dispose();
    next.dispose();
  });
});
