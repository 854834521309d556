import { strict as assert } from 'assert';
import * as tf from '@tensorflow/tfjs';
import { CausalLM } from '../../src/model';
import { peft } from '../../src/peft/peft';
import { LoraAdapter, addLora, addWeightedLora, hashSeed } from '../../src/peft/lora';
import {
  calculateMajoritySignMask, dareLinear, dareTies, disjointMerge, magnitudeBasedPruning, magnitudePrune, prune, randomPruning, taskArithmetic, ties,
} from '../../src/peft/merge-methods';
import { svd } from '../../src/util/linalg';
import { Rng } from '../../src/util/rng';
import { logitsOf, tinyFamilies } from './fixtures';
import { engineReady, maxAbsDiff } from '../helpers';

const arr = (x: ArrayLike<number>) => Array.from(x, (v) => v + 0); // -0 → 0 for deepEqual

describe('peft/merge-methods', () => {
  describe('rules on hand-made task tensors', () => {
    it('trim keeps the ⌊density·n⌋ largest magnitudes', () => {
      assert.deepEqual(arr(magnitudeBasedPruning([1, -3, 2, -0.5], 0.5)), [0, -3, 2, 0]);
      assert.deepEqual(arr(magnitudeBasedPruning([1, -3, 2, -0.5], 0.8)), [1, -3, 2, 0]); // ⌊3.2⌋ = 3 kept
    });

    it('prune: density ≥ 1 keeps everything, density < 0 is refused', () => {
      assert.deepEqual(arr(prune([1, -2], 1, 'magnitude')), [1, -2]);
      assert.throws(() => prune([1], -0.1, 'magnitude'), /density must be in \[0, 1\] \(got -0.1\)/);
    });

    it('elects signs by total and by frequency', () => {
      const t = [[1, -2, 3], [-3, 1, 1], [1, -0.5, 0]];
      // totals −1, −1.5, 4 → (−, −, +); sign counts +1, −1, +2 → (+, −, +)
      assert.deepEqual(calculateMajoritySignMask(t, 'total').map(arr), [[0, 1, 1], [1, 0, 1], [0, 1, 0]]);
      assert.deepEqual(calculateMajoritySignMask(t, 'frequency').map(arr), [[1, 1, 1], [0, 0, 1], [1, 1, 0]]);
      // disjoint mean under the 'total' mask: −3; (−2 − 0.5)/2; (3 + 1)/2
      assert.deepEqual(arr(disjointMerge(t, calculateMajoritySignMask(t, 'total'))), [-3, -1.25, 2]);
      // an entry no tensor agrees with (all zero) merges to 0
      assert.deepEqual(arr(disjointMerge([[0], [0]], calculateMajoritySignMask([[0], [0]]))), [0]);
    });

    it('task arithmetic and magnitude_prune are weighted sums', () => {
      assert.deepEqual(arr(taskArithmetic([[1, 2], [3, -4]], [2, 0.5])), [3.5, 2]);
      // trimmed to [0, 2] and [3, 0]
      assert.deepEqual(arr(magnitudePrune([[1, 2], [3, -0.5]], [2, 0.5], 0.5)), [1.5, 4]);
    });

    it('TIES: trim, elect on the trimmed tensors, disjoint mean of the weighted ones', () => {
      const t = [[4, -1, 2, 0.5], [-3, 2, -1, 1]];
      // trimmed [4, 0, 2, 0] and [−3, 2, 0, 0]; totals 1, 2, 2, 0 → all +; weighted [4, 0, 2, 0], [−1.5, 1, 0, 0]
      assert.deepEqual(arr(ties(t, [1, 0.5], 0.5)), [4, 1, 2, 0]);
      // one large positive against two small negatives: 'total' keeps +5, 'frequency' the mean of the −1s
      assert.deepEqual(arr(ties([[5], [-1], [-1]], [1, 1, 1], 1, 'total')), [5]);
      assert.deepEqual(arr(ties([[5], [-1], [-1]], [1, 1, 1], 1, 'frequency')), [-1]);
    });

    it('DARE drops with the seed\'s draws and rescales the kept entries by 1/density', () => {
      const t = Float64Array.from({ length: 2000 }, (_, i) => 1 + (i % 3));
      const got = randomPruning(t, 0.25, new Rng(5), true);
      const draws = new Rng(5);
      const want = t.map((x) => (draws.next() < 0.25 ? x * 4 : 0));
      assert.deepEqual(arr(got), arr(want));
      assert.ok(got.some((x) => x === 0) && got.some((x) => x !== 0));
      // the rescale keeps the expectation: mean of dropped ≈ mean of t (2)
      const mean = got.reduce((s, x) => s + x, 0) / got.length;
      assert.ok(Math.abs(mean - 2) < 0.2, `mean ${mean}`);
      // dare_linear = Σ wᵢ·drop(tᵢ); the same seed gives the same result, another seed another one
      const d1 = dareLinear([t, t], [1, 0.5], 0.5, new Rng(9));
      assert.deepEqual(arr(d1), arr(dareLinear([t, t], [1, 0.5], 0.5, new Rng(9))));
      assert.notDeepEqual(arr(d1), arr(dareLinear([t, t], [1, 0.5], 0.5, new Rng(10))));
      const r = new Rng(9);
      const a = randomPruning(t, 0.5, r, true);
      const b = randomPruning(t, 0.5, r, true);
      assert.deepEqual(arr(d1), arr(taskArithmetic([a, b], [1, 0.5])));
      // dare_ties = TIES' elect and disjoint mean on the dropped tensors
      const s = [[3, -1, 2, 1], [-1, 2, 2, 1]];
      const r2 = new Rng(4);
      const dropped = s.map((x) => randomPruning(x, 0.5, r2, true));
      const wd = dropped.map((x, i) => x.map((v) => v * [1, 2][i]));
      assert.deepEqual(arr(dareTies(s, [1, 2], 0.5, new Rng(4))), arr(disjointMerge(wd, calculateMajoritySignMask(dropped))));
      assert.deepEqual(arr(dareTies(s, [1, 1], 1, new Rng(4))), arr(ties(s, [1, 1], 1)));
    });
  });

  describe('addWeightedLora on real adapters', () => {
    const { llama } = tinyFamilies();
    let m: CausalLM;
    let x: LoraAdapter;
    let y: LoraAdapter;
    before(engineReady);
    /** A LoRA with random A and B (B scaled down so the logits stay in range). */
    const make = (name: string, alpha: number, seed: number, targetModules: string[]) => {
      const a = addLora(m, { r: 4, alpha, targetModules, initLoraWeights: false, seed }, name);
      for (const [k, v] of a.weights) if (k.endsWith('lora_B')) v.assign(tf.mul(v, 0.2));
      return a;
    };
    beforeEach(() => {
      m = CausalLM.create(llama, { seed: 1 });
      x = make('x', 8, 1, ['q_proj', 'v_proj']);
      y = make('y', 4, 2, ['q_proj', 'o_proj']);
    });
    afterEach(() => m.dispose());

    const host = (t: tf.Tensor) => { const d = Float64Array.from(t.dataSync()); return d; };
    const deltaOf = (a: LoraAdapter, p: string) => { const t = a.delta(p); const d = host(t); t.dispose(); return d; };

    /** Logits of the merged adapter against the base with ΔW (from `want`) added to each target by hand. */
    function checkLogits(merged: LoraAdapter, want: (p: string) => Float64Array): void {
      peft(m).use(merged.name);
      const got = logitsOf(m);
      peft(m).disable();
      const saved = new Map<string, tf.Tensor>();
      for (const p of merged.loraTargets) {
        const w = m.weight(`${p}.weight`);
        saved.set(p, w.clone());
        w.assign(tf.tidy(() => tf.add(w, tf.tensor(Float32Array.from(want(p)), w.shape))));
      }
      const hand = logitsOf(m);
      for (const [p, t] of saved) { m.weight(`${p}.weight`).assign(t); t.dispose(); }
      peft(m).enable();
      assert.ok(maxAbsDiff(got, hand) < 1e-4, `max diff ${maxAbsDiff(got, hand)}`);
    }

    it("'svd' at full rank equals Σ wᵢ·ΔWᵢ; below it, the best rank-k approximation", () => {
      const w = [0.7, -1.5];
      const sum = (p: string) => taskArithmetic([x, y].map((a) => (a.loraTargets.includes(p) ? deltaOf(a, p) : new Float64Array(0))).filter((d) => d.length),
        [x, y].flatMap((a, i) => (a.loraTargets.includes(p) ? [w[i]] : [])));
      const full = addWeightedLora(m, ['x', 'y'], w, 'full', 'svd', { svdRank: 16 });
      assert.equal(full.config.r, 16);
      assert.equal(full.scale, 1);
      checkLogits(full, sum);
      const k4 = addWeightedLora(m, ['x', 'y'], w, 'k4', 'svd');
      assert.equal(k4.config.r, 4); // default: the largest source rank
      for (const p of k4.loraTargets) {
        const target = sum(p);
        const [inDim, outDim] = m.weight(`${p}.weight`).shape;
        const sv = svd(target, inDim, outDim).s;
        const got = deltaOf(k4, p);
        const err = Math.sqrt(got.reduce((s, v, i) => s + (v - target[i]) ** 2, 0));
        const best = Math.sqrt(Array.from(sv.slice(4)).reduce((s, v) => s + v * v, 0));
        assert.ok(Math.abs(err - best) < 1e-4 * Math.max(1, best), `${p}: ${err} vs ${best}`);
        if (p.endsWith('q_proj')) assert.ok(best > 1e-3, 'the q_proj sums have rank > 4, so truncation matters');
      }
    });

    it("'ties_svd' / 'dare_ties_svd' / 'magnitude_prune_svd' apply the rule to the full ΔWᵢ", () => {
      // q and o are 32×32: rank 32 keeps the (full-rank) merged ΔW exactly.
      peft(m).remove('x');
      peft(m).remove('y');
      x = make('x', 8, 1, ['q_proj']);
      y = make('y', 4, 2, ['q_proj', 'o_proj']);
      const w = [1, 0.5];
      const parts = (p: string) => [x, y].filter((a) => a.loraTargets.includes(p)).map((a) => deltaOf(a, p));
      const ws = (p: string) => [x, y].flatMap((a, i) => (a.loraTargets.includes(p) ? [w[i]] : []));
      const o = { svdRank: 32, density: 0.3 };
      checkLogits(addWeightedLora(m, ['x', 'y'], w, 't', 'ties_svd', { ...o, majoritySignMethod: 'frequency' }), (p) => ties(parts(p), ws(p), 0.3, 'frequency'));
      checkLogits(addWeightedLora(m, ['x', 'y'], w, 'mp', 'magnitude_prune_svd', o), (p) => magnitudePrune(parts(p), ws(p), 0.3));
      const dts = addWeightedLora(m, ['x', 'y'], w, 'dts', 'dare_ties_svd', { ...o, seed: 3 });
      checkLogits(dts, (p) => dareTies(parts(p), ws(p), 0.3, new Rng(hashSeed(`3:dts:${p}`))));
      const first = new Map([...dts.weights].map(([k, v]) => [k, v.dataSync().slice()]));
      peft(m).remove('dts');
      const again = addWeightedLora(m, ['x', 'y'], w, 'dts', 'dare_ties_svd', { ...o, seed: 3 }); // same seed, same drops
      for (const [k, v] of first) assert.deepEqual(again.weights.get(k)!.dataSync(), v, k);
    });

    it("'ties' / 'dare_linear' / 'magnitude_prune' merge A and B directly with √(wᵢ·scaleᵢ) weights", () => {
      const w = [1, 0.5];
      for (const [comb, opts] of [['ties', { density: 0.5 }], ['dare_linear', { density: 0.5, seed: 2 }], ['magnitude_prune', { density: 0.7 }]] as const) {
        const merged = addWeightedLora(m, ['x', 'y'], w, comb, comb, opts);
        assert.equal(merged.config.r, 4);
        checkLogits(merged, (p) => {
          const has = [x, y].map((a, i) => [a, i] as const).filter(([a]) => a.loraTargets.includes(p));
          const vw = has.map(([a, i]) => Math.sqrt(w[i] * a.scale));
          const side = (k: string) => {
            const ts = has.map(([a]) => host(a.weights.get(`${p}.${k}`)!));
            const rng = new Rng(hashSeed(`${'seed' in opts ? opts.seed : 0}:${comb}:${p}.${k}`));
            return comb === 'ties' ? ties(ts, vw, 0.5) : comb === 'dare_linear' ? dareLinear(ts, vw, 0.5, rng) : magnitudePrune(ts, vw, 0.7);
          };
          const a = side('lora_A');
          const b = side('lora_B');
          const [inDim, outDim] = m.weight(`${p}.weight`).shape;
          return Float64Array.from({ length: inDim * outDim }, (_, k) => {
            let s = 0;
            for (let j = 0; j < 4; j++) s += a[Math.floor(k / outDim) * 4 + j] * b[j * outDim + (k % outDim)];
            return s;
          });
        });
      }
    });

    it('svdClamp clips both factors at the quantile of their entries', () => {
      const clamped = addWeightedLora(m, ['x', 'y'], [1, 1], 'c', 'svd', { svdClamp: 0.9 });
      const free = addWeightedLora(m, ['x', 'y'], [1, 1], 'f', 'svd');
      const p = 'layers.0.attn.q_proj';
      const vals = [...free.weights.get(`${p}.lora_A`)!.dataSync(), ...free.weights.get(`${p}.lora_B`)!.dataSync()].sort((a, b) => a - b);
      const pos = 0.9 * (vals.length - 1);
      const hi = vals[Math.floor(pos)] + (pos - Math.floor(pos)) * (vals[Math.ceil(pos)] - vals[Math.floor(pos)]);
      for (const k of ['lora_A', 'lora_B']) {
        const f = free.weights.get(`${p}.${k}`)!.dataSync();
        const c = clamped.weights.get(`${p}.${k}`)!.dataSync();
        f.forEach((v, i) => assert.ok(Math.abs(c[i] - Math.min(Math.max(v, -hi), hi)) < 1e-6, `${k}[${i}]`));
      }
      assert.ok(vals[vals.length - 1] > hi, 'something was clipped');
    });

    it('keeps the tensor count flat and refuses what PEFT cannot do', () => {
      addWeightedLora(m, ['x', 'y'], [1, 1], 'warm', 'dare_ties_svd', { density: 0.5 });
      peft(m).remove('warm');
      const before = tf.memory().numTensors;
      addWeightedLora(m, ['x', 'y'], [1, 1], 'tmp', 'dare_ties_svd', { density: 0.5 });
      peft(m).remove('tmp');
      assert.equal(tf.memory().numTensors, before);
      assert.throws(() => addWeightedLora(m, ['x', 'y'], [1, 1], 'z', 'ties'), /'ties' needs options.density in \[0, 1\] \(got undefined\)/);
      assert.throws(() => addWeightedLora(m, ['x', 'y'], [1, 1], 'z', 'linear', { density: 0.5 }), /density does not apply to 'linear'/);
      assert.throws(() => addWeightedLora(m, ['x', 'y'], [1, -1], 'z', 'ties', { density: 0.5 }), /weights must be ≥ 0.*use 'ties_svd'/);
      assert.throws(() => addWeightedLora(m, ['x', 'y'], [1, 1], 'z', 'svd', { svdRank: 17 }), /svdRank 17 exceeds min\(in, out\) = 16 of layers.0.attn.v_proj/);
      assert.throws(() => addWeightedLora(m, ['x', 'y'], [1, 1], 'z', 'svd', { svd_rank: 2 } as never), /unknown option "svd_rank"; did you mean "svdRank"\?/);
      assert.throws(() => addWeightedLora(m, ['x', 'y'], [1, 1], 'z', 'bogus' as never), /combination must be one of/);
      addLora(m, { r: 2 }, 'r2');
      assert.throws(() => addWeightedLora(m, ['x', 'r2'], [1, 1], 'z', 'dare_linear', { density: 0.5 }), /'dare_linear' needs equal ranks.*use 'cat' or 'dare_linear_svd'/);
    });
  });
});
