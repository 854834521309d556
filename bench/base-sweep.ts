/**
 * Size sweep for the shipped base (issue 14): pretrains each size for the same wall-clock budget with
 * models/pretrain.ts and prints held-out perplexity per size, so the base is picked by perplexity per unit
 * of training time. Each run writes models/.runs/sweep/<name>/ (model, card, training.json); a size whose
 * training.json exists is not run again, so a stopped sweep goes on where it stopped.
 *
 *   npx tsx bench/base-sweep.ts [--minutes 22] [--seq-len 256] [--only sweep-3m]
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

import { argValue, numberArg } from './common';

const root = path.join(__dirname, '..');
const minutes = String(numberArg('minutes', 22, false));
const seqLen = String(numberArg('seq-len', 256));
const only = argValue('only', '');

/** Sizes: about 1M, 2.8M and 6.2M parameters (vocab 2048, tied embeddings, head size 32, 2 KV heads). */
const sizes = [
  { name: 'sweep-1m', dModel: 128, layers: 4, heads: 4, dFf: 384 },
  { name: 'sweep-3m', dModel: 192, layers: 6, heads: 6, dFf: 512 },
  { name: 'sweep-6m', dModel: 256, layers: 8, heads: 8, dFf: 704 },
];

if (only && !sizes.some((s) => s.name === only)) {
  process.stderr.write(`base-sweep.ts: --only ${only}: no such size (${sizes.map((s) => s.name).join(', ')})\n`);
  process.exit(2);
}
const rows: string[] = [];
for (const s of sizes) {
  if (only && s.name !== only) continue;
  const out = path.join(root, 'models/.runs/sweep', s.name);
  const cardFile = path.join(out, 'training.json');
  if (!fs.existsSync(cardFile)) {
    fs.mkdirSync(path.dirname(out), { recursive: true });
    const args = ['--require', require.resolve('tsx/cjs'), path.join(root, 'models/pretrain.ts'), '--name', s.name, '--out', out,
      '--minutes', minutes, '--seq-len', seqLen, '--d-model', String(s.dModel), '--layers', String(s.layers),
      '--heads', String(s.heads), '--kv-heads', '2', '--d-ff', String(s.dFf)];
    console.log(`${s.name}: ${minutes} min`);
    const r = spawnSync(process.execPath, args, { stdio: 'inherit' });
    if (r.status !== 0) throw new Error(`${s.name}: pretrain exited ${r.status}`);
  }
  const c = JSON.parse(fs.readFileSync(cardFile, 'utf8'));
  rows.push(`| ${s.name} | ${c.params.toLocaleString('en-US')} | ${c.seqLen} | ${c.trainMinutes} | ${c.steps} | ${c.tokensSeen.toLocaleString('en-US')} | ${c.tokensPerSec.toLocaleString('en-US')} | ${c.finalTrainLoss} | **${c.heldOutPerplexity}** | ${c.reference ? `${c.reference.thisModelSameWindows} vs ${c.reference.heldOutPerplexity}` : "—"} |`);
}
console.log('\n| size | params | context | train min | steps | tokens | tokens/s | train loss | held-out ppl | this vs tiny-llama, same tokens and windows |');
console.log('|---|---|---|---|---|---|---|---|---|---|');
for (const r of rows) console.log(r);
