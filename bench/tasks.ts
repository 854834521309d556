/**
 * Task scores of a model (default the shipped base `tiny-llama`) on the three shipped tasks (src/eval/tasks/
 * shipped.ts: last word, real continuation, domain completion; 200 documents each, seed 21), and the
 * word/byte perplexity of the general held-out documents (loglikelihood_rolling), with 95 % intervals
 * (Wilson for accuracies, a 1,000-resample seeded bootstrap for perplexities). Scores are deterministic for
 * a model; the wall time is the only machine-dependent number.
 *
 *   npx tsx bench/tasks.ts [--model tiny-llama|<checkpoint folder>] [--size 200]
 *
 * One JSON object on stdout (machine, wall seconds, score rows); progress on stderr. See BENCHMARKS.md
 * ("Task scores of the shipped base").
 */
import * as os from 'os';
import { engine, initEngine } from '../src/engine';
import { argValue, logger, machineRecord } from './common';
import { base } from '../src/lab/base';
import { dataset } from '../src/lab/data';
import { evaluateTasks, taskScoreRows } from '../src/eval/tasks/evaluate';
import { shippedTasks } from '../src/eval/tasks/shipped';
import { task } from '../src/eval/tasks/task';

const log = logger('bench:tasks');

async function main(): Promise<void> {
  const load = os.loadavg();
  await initEngine();
  const name = argValue('model', 'tiny-llama');
  const size = Number(argValue('size', '200'));
  const { model, tokenizer } = await base(name);
  const general = dataset('general', 'heldout');
  const tasks = [
    ...shippedTasks({ size }),
    task({ name: 'general_heldout', kind: 'loglikelihood_rolling', docs: general, target: (d: string) => d, description: 'every general held-out document' }),
  ];
  const rows = [];
  const began = Date.now();
  for (const t of tasks) {
    const t0 = Date.now();
    const [r] = evaluateTasks(model, tokenizer, [t]);
    log(`${t.name}: ${t.docs.length} documents, ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    rows.push(...taskScoreRows([r], name).map((s) => ({ ...s, seconds: (Date.now() - t0) / 1000 })));
  }
  console.log(JSON.stringify({ machine: machineRecord(load, log), engine: engine()?.backend, model: name, size, wallSeconds: (Date.now() - began) / 1000, rows }, null, 1));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
