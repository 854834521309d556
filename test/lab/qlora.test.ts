import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { lab } from '../../src/lab/lab';
import { dataset } from '../../src/lab/data';
import { engineReady } from '../helpers';

describe('lab: QLoRA (quantized bases in the fluent API)', function () {
  this.timeout(600000);
  let dir: string;
  before(engineReady);
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qlora-lab-'))));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));
  const rows = dataset('instructions').slice(0, 48);
  const held = dataset('instructions', 'heldout').slice(0, 8);
  const how = { method: 'sft', config: { maxSteps: 3, batchSize: 4, lr: 1e-3 } } as const;

  it('compare: qlora rows beside lora, same trainable count, less weight memory, close held-out loss', async () => {
    const start = lab.base('tiny-llama').log(dir).show(false).data(rows).eval(held);
    const cmp = await start.compare({
      lora: (l) => l.lora({ r: 4 }),
      'qlora nf4': (l) => l.qlora({ r: 4 }),
      'qlora int8': (l) => l.qlora({ r: 4, bits: 8 }),
      'qlora nf4 all': (l) => l.qlora({ r: 4, embeddings: true, doubleQuant: true }),
    }, how);
    const by = (s: string) => cmp.rows.find((r) => r.strategy === s)!;
    assert.deepEqual(cmp.table().array('strategy'), ['lora', 'qlora nf4', 'qlora int8', 'qlora nf4 all']);
    const lora = by('lora');
    // Float32 base of tiny-llama: 2048·128 embeddings + 4 · 196,608 projections + 9·128 norms, 4 bytes each, plus the adapter.
    assert.equal(cmp.runs[0].model.paramCount(), 1049728);
    assert.ok(Math.abs(lora.weightMiB - (1049728 + lora.trainableParams) * 4 / 2 ** 20) < 1e-9, `${lora.weightMiB}`);
    for (const s of ['qlora nf4', 'qlora int8', 'qlora nf4 all']) {
      const r = by(s);
      assert.equal(r.trainableParams, lora.trainableParams, s);
      assert.ok(Math.abs(r.finalEvalLoss! - lora.finalEvalLoss!) / lora.finalEvalLoss! < 0.02, `${s}: ${r.finalEvalLoss} vs ${lora.finalEvalLoss}`);
    }
    assert.ok(by('qlora int8').weightMiB < 0.45 * lora.weightMiB);
    assert.ok(by('qlora nf4').weightMiB < 0.37 * lora.weightMiB);
    assert.ok(by('qlora nf4 all').weightMiB < 0.14 * lora.weightMiB);
    assert.equal(cmp.runs[1].model.quantized.get('layers.0.attn.q_proj.weight')!.format, 'nf4');
    cmp.dispose();
  });

  it('lab.base(…, { quantize }) trains any adapter on the quantized base, continues into a next stage, saves', async () => {
    const start = lab.base('tiny-llama', { quantize: 'int8' }).log(dir).show(false).data(rows);
    const run = await start.ia3().sft(how.config);
    assert.equal(run.model.quantized.size, 28);
    assert.match(run.record.strategy, /^ia3$/);
    // The next stage starts from the decoded base with IA3 folded in, quantized again.
    const next = await run.data(rows).lora({ r: 2 }).sft(how.config);
    assert.equal(next.model.quantized.size, 28);
    await next.save(path.join(dir, 'saved'));
    assert.ok(fs.existsSync(path.join(dir, 'saved', 'adapter_model.safetensors')) && fs.existsSync(path.join(dir, 'saved', 'base', 'model.safetensors')));
    await assert.rejects(() => start.full().sft(how.config), /sft: a quantized base trains adapters only .* instead of \.full\(\)/);
    assert.throws(() => lab.base('tiny-llama').qlora({ bits: 3 as never }), /qlora: bits must be 4 \(NF4\) or 8 \(int8\) \(got 3\)/);
    assert.throws(() => lab.base('tiny-llama', { quantise: 'nf4' } as never), /lab\.base: unknown option "quantise"; did you mean "quantize"\?/);
    assert.throws(() => lab.base('tiny-llama', { quantize: 'nf2' as never }), /lab\.base quantize: format must be "int8" or "nf4" \(got "nf2"\)/);
    await assert.rejects(() => start.qlora().sft(how.config), /qlora: the base is already quantized/);
    [run, next].forEach((r) => r.dispose());
  });
});
