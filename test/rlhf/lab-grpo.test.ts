import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { lab } from '../../src/lab/lab';
import { largestDigitTask } from '../../src/rlhf/tasks';
import { engineReady } from '../helpers';

describe('lab: .grpo() and .rloo()', function () {
  let dir: string;
  before(engineReady);
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lab-grpo-'))));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('chain after SFT, log their runs, and take several weighted rewards; LoRA runs hold no reference copy', async () => {
    const task = largestDigitTask();
    const warm = await lab.base('tiny-llama').log(dir).show(false).data(task.sftRows('train')).sft({ maxSteps: 2, batchSize: 4 });
    const prompts = task.prompts('train').slice(0, 8);
    const short = (_p: string, c: string) => (c.trim().length === 1 ? 1 : 0);
    const g = await warm.data(prompts).lora({ r: 4 }).grpo([task.reward, short], { maxSteps: 1, batchSize: 2, numGenerations: 4, maxCompletionLength: 3, beta: 0.04, rewardWeights: [1, 0.1] });
    assert.equal(g.record.method, 'grpo');
    assert.equal(g.result.memory.referenceBytes, 0); // the reference is the SFT model: the adapters off
    assert.ok(Number.isFinite(g.result.history[0]['rewards/short/mean']));
    const r = await warm.data(prompts).rloo(task.reward, { maxSteps: 1, batchSize: 2, maxCompletionLength: 3 });
    assert.equal(r.record.method, 'rloo');
    assert.equal(r.result.history[0]['completions/max_length'] <= 3, true);
    assert.deepEqual(lab.runs(dir).table().array('method'), ['sft', 'grpo', 'rloo']);
    await assert.rejects(() => warm.grpo(task.reward), /grpo: no prompts; call .data\(prompts\) first/);
    await assert.rejects(() => warm.data(prompts).rloo(task.reward, { numGeneration: 4 } as never), /numGeneration/);
    for (const run of [warm, g, r]) run.dispose();
  });
});
