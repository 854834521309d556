import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { base } from '../../src/lab/base';
import { lab } from '../../src/lab/lab';
import { dataTexts, runBias } from '../../src/lab/audit';
import { pronounProbe } from '../../src/eval/bias';
import { saveModel } from '../../src/io/checkpoint';
import { engineReady } from '../helpers';

describe('lab/audit: bias, drift and distillation verbs', function () {
  this.timeout(120_000);
  before(engineReady);

  it('dataTexts: documents as they are; rows as their text columns joined', () => {
    assert.deepEqual(dataTexts(['a doc', 'b doc']), ['a doc', 'b doc']);
    assert.deepEqual(dataTexts([{ prompt: 'Q', completion: 'A', source: 'x' }, { messages: [{ role: 'user', content: 'hi' }, { role: 'assistant', content: 'she' }] }]), ['Q\nA', 'hi\nshe']);
    assert.throws(() => dataTexts([{ prompt: 'p', chosen: 'a', rejected: 'b' }], 'bias data'), /bias data: row 0 is a preference pair/);
  });

  it('run.bias compares with the base loaded again: an unchanged model shifts by nothing', async () => {
    const same = await base('tiny-llama');
    const rows = [{ prompt: 'Who?', completion: 'He and his son; she.' }];
    const r = await runBias({ model: same.model, tokenizer: same.tokenizer, record: { base: 'tiny-llama' } }, rows, { ...pronounProbe, templates: pronounProbe.templates.slice(0, 1) });
    same.model.dispose();
    assert.deepEqual(r.rows.map((x) => x.dataCount), [2, 1]);
    for (const x of r.rows) assert.ok(Math.abs(x.shift) < 1e-6, `${x.group} shift ${x.shift}`);
    // The shipped base, pretrained on 89.6 % male pronouns, puts most of the mass on he/his/him after a role.
    assert.ok(r.rows[0].baseShare > 0.5, r.summary());
  });

  it('lab.drift finds saved folders of the log; lab.distill takes a model as teacher', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tunelab-audit-'));
    try {
      const b = await base('tiny-llama');
      const log = lab.runs(dir);
      log.add({ run: 'base-copy', method: 'none', strategy: 'full', base: 'tiny-llama', finishedAt: '2026-01-01T00:00:00.000Z', steps: 0, tokens: 0, wallMs: 0,
        tokensPerSec: 0, trainableParams: 0, trainablePercent: 0, finalTrainLoss: null, finalEvalLoss: null, forgettingDelta: null, targetDelta: null, config: '{}' });
      await saveModel(path.join(dir, 'base-copy', 'final'), b.model, b.tokenizer);
      const d = await lab.drift(undefined, { dir, maxWindows: 2 });
      assert.deepEqual(d.rows.map((r) => `${r.version} ${r.set}`), ['base-copy/final sotu 1951–1977', 'base-copy/final sotu 1999–2011']);
      assert.ok(d.rows.every((r) => Number.isFinite(r.value) && r.tokens > 0));
      await assert.rejects(lab.drift(['nope'], { dir }), /no run "nope" \(runs: base-copy\)/);
      const distilled = await lab.distill({ ...b, name: 'tiny-llama' }, undefined, { numInstructions: 2, maxRequests: 2, instructionTokens: 16, responseTokens: 8, minWords: 1, examplesPerPrompt: 1 });
      assert.equal(distilled.teacher, 'tiny-llama');
      assert.equal(distilled.requests.instructions, 2);
      b.model.dispose();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
