/**
 * `npm run pretrain-base`: trains the shipped Llama-style base model on datasets/general and writes
 * models/<name>/ (config.json, model.safetensors, tokenizer.json, README.md model card).
 *
 * With no arguments it reproduces the shipped small-llama (its card's command: same seed, shape and steps,
 * same weights on the same engine). `--minutes M` trains for a wall-clock budget instead: a short pilot
 * measures the step time and sets the step count so that the cosine schedule ends on time. Checkpoints go
 * to models/.runs/<name>/ (git-ignored) so a crash resumes with `--resume`. An existing output folder is
 * never replaced without `--force`.
 *
 *   npx tsx models/pretrain.ts [--steps 2401 | --minutes M] [--name small-llama] [--out DIR] [--force]
 *     [--seq-len 256] [--d-model 192] [--layers 6] [--heads 6] [--kv-heads 2] [--d-ff 512] [--batch 16]
 *     [--resume models/.runs/<name>/checkpoint-N]
 *
 * tiny-llama is `--name tiny-llama --minutes 49 --seq-len 128 --d-model 128 --layers 4 --heads 4 --d-ff 384`
 * on the engine of its day (its card).
 */
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { initEngine } from '../src/engine';
import { CausalLM, ModelConfig, generate, modelConfig } from '../src/model';
import { Tokenizer } from '../src/tokenizer';
import { Trainer } from '../src/train/trainer';
import { TokenWindows, causalLmObjective, evalWindows, evaluateLm, tokenStream } from '../src/train/causal-lm';
import { textDocuments } from '../src/data/load';
import { checkpointWriter, loadModel, resumeFrom, saveModel } from '../src/io/checkpoint';
import { writeFileAtomic } from '../src/io/atomic';
import { TerminalProgress, formatDuration } from '../src/viz/progress';
import { argValue, numberArg } from '../bench/common';

const root = path.join(__dirname, '..');
const name = argValue('name', 'small-llama');
const outDir = path.resolve(argValue('out', path.join(root, 'models', name)));
const minutes = numberArg('minutes', 0, false);
const fixedSteps = numberArg('steps', 2401);
const resume = process.argv.includes('--resume') ? argValue('resume', '') : undefined;
const seed = 42;
const seqLen = numberArg('seq-len', 256);
const batchSize = numberArg('batch', 16);
const vocabSize = numberArg('vocab', 2048);
const shape: Partial<ModelConfig> = {
  family: 'llama', contextLength: seqLen, dModel: numberArg('d-model', 192), nLayers: numberArg('layers', 6),
  nHeads: numberArg('heads', 6), nKvHeads: numberArg('kv-heads', 2), dFf: numberArg('d-ff', 512), tieEmbeddings: true,
};
/** The command that reproduces a run of `steps` steps: every argument that shapes the weights (not --resume/--out). */
const reproduceCommand = (steps: number) => `npm run pretrain-base -- --name ${name} --steps ${steps} --seq-len ${seqLen} --batch ${batchSize} ` +
  `--vocab ${vocabSize} --d-model ${shape.dModel} --layers ${shape.nLayers} --heads ${shape.nHeads} --kv-heads ${shape.nKvHeads} --d-ff ${shape.dFf}`;

/** Fixed prompts of the card: the same ones for every base, so cards compare. */
const cardPrompts = [
  'The ship', 'It was the best', 'Fellow citizens,', 'In the beginning', 'The whale',
  'We must', 'And the LORD said', 'The people of this nation', 'Call me', 'At sea, the',
];

/** Documents of the general corpus are separated by two blank lines (datasets/README.md). */
const documents = (file: string) => textDocuments(file, '\n\n\n');

async function main() {
  if (minutes > 0 && process.argv.includes('--steps')) throw new Error('--steps and --minutes: give one (a step count, or a time budget)');
  if (!resume && fs.existsSync(outDir) && !process.argv.includes('--force')) {
    throw new Error(`${outDir} exists; pass --force to replace it, or --out DIR / --name NAME to write elsewhere`);
  }
  const engine = await initEngine();
  const trainFile = path.join(root, 'datasets/general/train.txt');
  const heldFile = path.join(root, 'datasets/general/heldout.txt');
  // Recorded in the card, so the exact data behind the reported perplexity can be checked later.
  const sha256 = (f: string) => createHash('sha256').update(fs.readFileSync(f)).digest('hex');
  const data = { train: sha256(trainFile), heldout: sha256(heldFile) };
  const trainDocs = documents(trainFile);
  const heldDocs = documents(heldFile);
  const t0 = Date.now();
  const tok = Tokenizer.train(trainDocs, { vocabSize });
  const trainIds = tokenStream(tok, trainDocs);
  const heldIds = tokenStream(tok, heldDocs);
  console.log(`tokenizer: vocab ${tok.vocabSize} in ${formatDuration(Date.now() - t0)}; ${trainIds.length} train / ${heldIds.length} held-out tokens`);
  const config = modelConfig({ ...shape, vocabSize: tok.vocabSize });
  const model = new CausalLM(config, { seed });
  console.log(`model: ${model.paramCount()} params, ${config.nLayers} layers, d ${config.dModel}, backend ${engine.backend}`);

  // Cheap periodic eval on a fixed slice of held-out windows; the full set is evaluated at the end.
  const evalSlice = heldIds.slice(0, 64 * seqLen + 1);
  const runDir = path.join(root, 'models/.runs', name);
  const train = (maxSteps: number) => new Trainer(model, causalLmObjective, new TokenWindows(trainIds, seqLen, batchSize, seed, 'datasets/general/train.txt'), {
    lr: 2e-3, maxSteps, schedule: 'cosine', warmupSteps: Math.min(200, Math.ceil(maxSteps / 20)), minLrRatio: 0.1,
    weightDecay: 0.1, maxGradNorm: 1, seed, evalEvery: 500, checkpointEvery: 500, outDir: runDir,
  }, {
    checkpoints: checkpointWriter(tok),
    evaluate: (m) => evaluateLm(m, evalWindows(evalSlice, seqLen, batchSize)),
  });

  // A resumed run keeps its step count; a budgeted one times a few steps on a throwaway optimizer first
  // (the weights are restored after).
  let maxSteps: number;
  if (resume) {
    maxSteps = JSON.parse(fs.readFileSync(path.join(resume, 'trainer_state.json'), 'utf8')).max_steps; // HF's TrainerState
  } else if (minutes === 0) {
    maxSteps = fixedSteps;
  } else {
    const snapshot = new Map([...model.params].map(([p, { variable }]) => [p, variable.dataSync().slice()]));
    const pilot = train(1000);
    await pilot.trainStep();
    const ps = Date.now();
    for (let i = 0; i < 10; i++) await pilot.trainStep();
    const msPerStep = (Date.now() - ps) / 10;
    pilot.dispose();
    const tf = await import('@tensorflow/tfjs');
    tf.tidy(() => { for (const [p, data] of snapshot) model.weight(p).assign(tf.tensor(data, model.weight(p).shape)); });
    // Leave ~8% of the budget for evals, checkpoints and the final evaluation.
    maxSteps = Math.max(100, Math.floor((minutes * 60_000 * 0.92) / msPerStep));
    console.log(`pilot: ${msPerStep.toFixed(0)} ms/step → ${maxSteps} steps for ${minutes} min`);
  }
  const trainer = train(maxSteps);
  if (resume) resumeFrom(trainer as Trainer<unknown>, resume);
  const progress = new TerminalProgress(maxSteps, process.stdout, 100);
  trainer.on('step', (m) => progress.update(m));
  // The held-out curve against wall time: what a size sweep compares (perplexity per unit of training time).
  const started = Date.now();
  const curve: { step: number; minutes: number; evalLoss: number }[] = [];
  trainer.on('eval', (e) => {
    curve.push({ step: e.step, minutes: +((Date.now() - started) / 60000).toFixed(2), evalLoss: +e.evalLoss.toFixed(4) });
    console.log(`eval @${e.step}: held-out loss ${e.evalLoss.toFixed(3)}, perplexity ${e.perplexity.toFixed(1)}`);
  });
  const result = await trainer.train();
  progress.done();
  const trainMs = Date.now() - started;
  const held = await evaluateLm(model, evalWindows(heldIds, seqLen, batchSize));
  console.log(`held-out (all ${held.tokens} tokens): loss ${held.loss.toFixed(4)}, perplexity ${held.perplexity.toFixed(2)}`);
  const reference = await referencePerplexity(tok, heldIds, seqLen, model);

  await saveModel(outDir, model, tok);
  const continue_ = (p: string, o: { doSample: boolean }) =>
    p + tok.decode(generate(model, tok.encode(p), { maxNewTokens: 40, topP: 0.9, temperature: 0.8, seed: 1, ...o }), { skipSpecialTokens: true });
  const samples = cardPrompts.map((p) => ({ prompt: p, greedy: continue_(p, { doSample: false }), sampled: continue_(p, { doSample: true }) }));
  const last = result.history.at(-1)!;
  const card = {
    name, family: config.family, params: model.paramCount(), config, vocabSize: tok.vocabSize, seqLen, batchSize,
    steps: result.steps, tokensSeen: trainer.tokens, trainMinutes: +(trainMs / 60000).toFixed(1), tokensPerSec: Math.round(last.tokensPerSec),
    finalTrainLoss: +last.loss.toFixed(4), heldOutLoss: +held.loss.toFixed(4), heldOutPerplexity: +held.perplexity.toFixed(2),
    dataSha256: data, backend: engine.backend, machine: `${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, Node ${process.version}`,
    reference, date: new Date().toISOString().slice(0, 10), command: reproduceCommand(maxSteps), evalCurve: curve, samples,
  };
  writeFileAtomic(path.join(outDir, 'training.json'), JSON.stringify(card, null, 2) + '\n');
  writeFileAtomic(path.join(outDir, 'README.md'), modelCard(card));
  console.log(`saved ${outDir}`);
  trainer.dispose();
}

/**
 * The shipped tiny-llama's held-out perplexity on the very same tokens and windows, when it shares this
 * run's tokenizer (same corpus, same BPE training): the card's comparison is then token for token.
 */
async function referencePerplexity(tok: Tokenizer, heldIds: number[], seqLen: number, mine: CausalLM): Promise<Reference | undefined> {
  const dir = path.join(root, 'models', 'tiny-llama');
  if (!fs.existsSync(path.join(dir, 'tokenizer.json')) || path.resolve(dir) === outDir) return undefined;
  const { model, tokenizer } = await loadModel(dir);
  try {
    if (JSON.stringify(tokenizer?.toJSON()) !== JSON.stringify(tok.toJSON())) return undefined;
    // Its own context may be shorter: windows of min(its context, ours), evaluated the same way.
    const n = Math.min(seqLen, model.config.contextLength);
    const r = await evaluateLm(model, evalWindows(heldIds, n, batchSize));
    const same = await evaluateLm(mine, evalWindows(heldIds, n, batchSize));
    return { name: `tiny-llama (windows of ${n})`, heldOutPerplexity: +r.perplexity.toFixed(2), thisModelSameWindows: +same.perplexity.toFixed(2) };
  } finally {
    model.dispose();
  }
}

/** tiny-llama's perplexity and this model's on the same held-out tokens and windows. */
interface Reference { name: string; heldOutPerplexity: number; thisModelSameWindows: number }
type Sample = { prompt: string; greedy: string; sampled: string };

function modelCard(c: Record<string, unknown> & { config: ModelConfig; reference?: Reference; samples: Sample[] }): string {
  const cfg = c.config;
  return `# ${c.name}

A small Llama-style causal language model pretrained from scratch by \`npm run pretrain-base\` on
tunelab's general English corpus (\`datasets/general\`: public-domain books and speeches; see
datasets/README.md). tunelab ships it as a base to fine-tune (\`base('${c.name}')\`); BENCHMARKS.md, "Base models",
says how its size was chosen.

| | |
|---|---|
| architecture | Llama (RMSNorm, RoPE, SwiGLU, grouped-query attention ${cfg.nHeads}/${cfg.nKvHeads} heads, tied embeddings) |
| size | ${Number(c.params).toLocaleString('en-US')} parameters: ${cfg.nLayers} layers, d_model ${cfg.dModel}, d_ff ${cfg.dFf}, context ${cfg.contextLength} |
| tokenizer | byte-level BPE, ${c.vocabSize} tokens, trained on the same corpus (special: \`<|endoftext|>\`, \`<|startoftext|>\`, \`<|pad|>\`, \`<|im_start|>\`, \`<|im_end|>\`) |
| data | datasets/general/train.txt, documents separated by \`<|endoftext|>\`, windows of ${c.seqLen} tokens, batch ${c.batchSize} |
| training | ${c.steps} steps, ${Number(c.tokensSeen).toLocaleString('en-US')} tokens, AdamW lr 2e-3 cosine (warmup, floor 10%), weight decay 0.1, clip 1.0, seed 42 |
| time | ${c.trainMinutes} min at ${Number(c.tokensPerSec).toLocaleString('en-US')} tokens/s on ${c.backend} (${c.machine}), ${c.date} |
| final train loss | ${c.finalTrainLoss} |
| **held-out perplexity** | **${c.heldOutPerplexity}** (loss ${c.heldOutLoss}, all of datasets/general/heldout.txt) |
${c.reference ? `| reference | ${c.reference.name}: ${c.reference.heldOutPerplexity}; this model on the same tokens and windows: ${c.reference.thisModelSameWindows} |\n` : ''}
Measure it again: \`npx tunelab eval models/${c.name} --data datasets/general/heldout.txt --separator '\\n\\n\\n'\`.

Reproduce it: \`${c.command}\` (the same seed and steps give the same weights on the same engine).

## Continuations of fixed prompts (40 new tokens)

Greedy, then sampled (top-p 0.9, temperature 0.8, seed 1):

${c.samples.map((s) => `- greedy: ${oneLine(s.greedy)}\n- sampled: ${oneLine(s.sampled)}`).join('\n\n')}

## Limits
A model this small writes locally fluent, globally aimless English; it knows little. It exists to make
fine-tuning, forgetting and RLHF effects visible in minutes on a laptop CPU.
`;
}

const oneLine = (s: string) => s.replace(/\s+/g, ' ').trim();

main().catch((e) => {
  console.error(`pretrain: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
});
