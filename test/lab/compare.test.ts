import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { lab } from '../../src/lab/lab';
import { dataset } from '../../src/lab/data';
import { engineReady } from '../helpers';

describe('compare strategies (quick, shipped base and data)', function () {
  this.timeout(600000);
  let dir: string;
  before(engineReady);
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'compare-'))));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('runs full, frozen and every PEFT method on the same budget and tabulates them', async () => {
    const rows = dataset('instructions').slice(0, 96);
    const held = dataset('instructions', 'heldout').slice(0, 8);
    const start = lab.base('tiny-llama').log(dir).show(false).data(rows).eval(held).track({ every: 3, windows: 1 });
    const cmp = await start.compare({
      full: (l) => l.full(),
      'last block': (l) => l.freeze({ lastLayers: 1 }),
      lora: (l) => l.lora({ r: 4 }),
      ia3: (l) => l.ia3(),
      bottleneck: (l) => l.bottleneck(),
      prefix: (l) => l.prefixTuning({ numVirtualTokens: 4 }),
      prompt: (l) => l.promptTuning({ numVirtualTokens: 4, initText: 'Answer briefly.' }),
    }, { method: 'sft', config: { maxSteps: 3, batchSize: 4, lr: 1e-3 } });
    const t = cmp.table();
    assert.deepEqual(t.array('strategy'), ['full', 'last block', 'lora', 'ia3', 'bottleneck', 'prefix', 'prompt']);
    const by = (s: string) => cmp.rows.find((r) => r.strategy === s)!;
    const base = cmp.runs[0].model.paramCount();
    // Trainable counts by hand for the shipped llama (4 layers, d 128, kv dim 64, d_ff 384).
    assert.equal(by('full').trainableParams, base);
    assert.equal(by('lora').trainableParams, 4 * (4 * (128 + 128) + 4 * (128 + 64)));
    assert.equal(by('ia3').trainableParams, 4 * (64 + 64 + 384));
    assert.equal(by('prefix').trainableParams, 4 * 4 * 2 * 64);
    assert.equal(by('prompt').trainableParams, 4 * 128);
    for (const r of cmp.rows) {
      assert.ok(r.trainablePercent > 0 && r.trainablePercent <= 100, r.strategy);
      assert.ok(Number.isFinite(r.finalEvalLoss!) && Number.isFinite(r.forgetting!), r.strategy);
      assert.ok(r.peakMiB! > 0 && r.diskMiB > 0 && r.tokensPerSec > 0, r.strategy);
    }
    // Adapters store a small fraction of what full fine-tuning must store.
    for (const s of ['lora', 'ia3', 'bottleneck', 'prefix', 'prompt']) assert.ok(by(s).diskMiB < by('full').diskMiB / 10, s);
    // Full fine-tuning moves the general set more than the near-no-op adapters do.
    assert.ok(Math.abs(by('full').forgetting!) > Math.abs(by('ia3').forgetting!));
    assert.equal(lab.runs(dir).table().numRows(), 7);
    cmp.dispose();
  });
});
