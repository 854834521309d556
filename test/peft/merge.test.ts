import { strict as assert } from 'assert';
import * as tf from '@tensorflow/tfjs';
import { CausalLM, modelConfig } from '../../src/model';
import { addLora } from '../../src/peft/lora';
import { addIa3 } from '../../src/peft/ia3';
import { addPrefixTuning } from '../../src/peft/prefix';
import { peft } from '../../src/peft/peft';
import { mergedCopy } from '../../src/peft/merge';
import { engineReady, ids, maxAbsDiff } from '../helpers';

const logits = (m: CausalLM) => tf.tidy(() => Array.from(m.forward(ids([[1, 2, 3, 4, 5, 6]])).dataSync()));
const perturb = (w: ReadonlyMap<string, tf.Variable>, seed: number) => {
  let i = seed;
  for (const v of w.values()) v.assign(tf.add(v, tf.randomNormal(v.shape, 0, 0.1, 'float32', ++i)));
};

describe('peft: merged copies', () => {
  before(engineReady);

  it('folds stacked LoRA and IA3 into a plain copy with the same logits; the source keeps its adapters', async () => {
    const m = new CausalLM(modelConfig({ family: 'llama', vocabSize: 64, dModel: 32, nLayers: 2, nHeads: 4, nKvHeads: 2, dFf: 64, contextLength: 16 }), { seed: 1 });
    const lora = addLora(m, { r: 4, targetModules: 'all-linear' }, 'a');
    const ia3 = addIa3(m, {}, 'b');
    perturb(lora.weights, 1);
    perturb(ia3.weights, 50);
    peft(m).use(['a', 'b']);
    const want = logits(m);
    const copy = await mergedCopy(m);
    assert.equal(copy.adapterParams.size, 0);
    assert.equal(peft(copy).names.length, 0);
    assert.ok(maxAbsDiff(logits(copy), want) < 1e-4, `${maxAbsDiff(logits(copy), want)}`);
    assert.deepEqual(peft(m).activeNames, ['a', 'b']);
    assert.equal(maxAbsDiff(logits(m), want), 0);
    addPrefixTuning(m, { numVirtualTokens: 2 }, 'p');
    await assert.rejects(() => mergedCopy(m), /cannot fold adapter "p" \(PREFIX_TUNING\)/);
    copy.dispose();
    m.dispose();
  });
});
