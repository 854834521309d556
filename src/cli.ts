#!/usr/bin/env node
/**
 * The `tunelab` command line: the terminal side of the library.
 *   tunelab info | train | generate <model> | eval <model> | serve <model> | build-native
 * Wrong arguments print usage and exit 2; runtime errors print one line and exit 1 (no stack traces).
 */
import * as fs from 'fs';
import * as path from 'path';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { initEngine, BackendName, backendOrder } from './engine';
import { CausalLM, ModelConfig, modelConfig, generate } from './model';
import { Tokenizer } from './tokenizer';
import { splitText } from './data/text';
import { tensorboard } from './eval/tensorboard';
import { keepWeights, resumeCommand, trainingDocuments } from './cli-train';
import { checkOutputPlace, checkpointBytes } from './train/output-check';
import { stopOnSignal } from './train/interrupt';
import { NonFiniteLossError, Trainer } from './train/trainer';
import { TokenWindows, causalLmObjective, evalWindows, evaluateLm, tokenStream } from './train/causal-lm';
import { checkpointWriter, loadModel, resumeFrom, saveModel } from './io/checkpoint';
import { exportGguf, exportLoraGguf, type GgufWeightType } from './io/gguf';
import { recoverFolder } from './io/recover';
import { loadAdapter, mergeAndUnload } from './peft';
import { TerminalProgress, formatDuration } from './viz/progress';
import { registerKernelCommand } from './kernel/spec';
import { registerServeCommand } from './serve/cli';
import { registerDoctorCommand } from './io/doctor-cli';
import { buildNativeHint, registerBuildNativeCommand } from './cli-build-native';

const version: string = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'package.json'), 'utf8')).version;

function int(name: string, min = 0) {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be an integer ≥ ${min}.`);
    return n;
  };
}

function num(name: string, check: (n: number) => boolean = (n) => n > 0, rule = 'a number > 0') {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isFinite(n) || !check(n)) throw new InvalidArgumentError(`${name} must be ${rule}.`);
    return n;
  };
}

const backendOption = () => new Option('--backend <name>', 'tensor backend').choices(['auto', ...backendOrder]);

async function startEngine(backend?: string) {
  return initEngine({ backend: (backend ?? undefined) as BackendName | 'auto' | undefined });
}


/** A run stopped by Ctrl-C after saving what it could: exit 130 (the shell's code for SIGINT), not an error. */
class Interrupted extends Error {}

function print(json: boolean, value: Record<string, unknown>, text: string): void {
  process.stdout.write(json ? `${JSON.stringify(value, null, 2)}\n` : `${text}\n`);
}

interface TrainOpts {
  data: string; out: string; family: 'llama' | 'gpt2'; layers: number; dModel: number; heads: number; kvHeads?: number;
  context: number; vocabSize: number; tokenizer?: string; steps: number; batchSize: number; lr: number;
  schedule: 'linear' | 'cosine' | 'constant'; warmup: number; seed: number; evalFraction: number; evalEvery: number;
  checkpointEvery: number; resume?: string; separator?: string; from?: string; gradAccum: number; weightDecay: number; dropout: number; backend?: string; json?: boolean;
}

async function train(o: TrainOpts, args: readonly string[]): Promise<void> {
  const info = await startEngine(o.backend);
  checkOutputPlace(o.out, { option: '--out' }); // the cheap checks before reading data and training a tokenizer; room once the model is known
  const docs = trainingDocuments(o.data, o.separator);
  // Hold out the last documents (or the tail of a single one) for evaluation.
  const heldCount = docs.length > 1 ? Math.round(docs.length * o.evalFraction) : 0;
  const split = heldCount > 0 ? { train: docs.slice(0, -heldCount), heldOut: docs.slice(-heldCount) }
    : (({ train, heldOut }) => ({ train: [train], heldOut: heldOut ? [heldOut] : [] }))(splitText(docs[0] ?? '', o.evalFraction));
  // Continue training a saved model (its architecture and tokenizer), or build both from scratch. A resumed
  // run takes the checkpoint's tokenizer: the one its weights were trained with.
  const start = o.from ? await loadOrFail(o.from) : undefined;
  // A checkpoint whose save crashed between its renames is put back first, so its tokenizer is found.
  if (o.resume) recoverFolder(o.resume);
  const resumeTok = o.resume ? path.join(o.resume, 'tokenizer.json') : undefined;
  const tok = start?.tokenizer ?? (resumeTok && fs.existsSync(resumeTok) ? Tokenizer.load(resumeTok)
    : o.tokenizer ? Tokenizer.load(o.tokenizer) : Tokenizer.train(split.train, { vocabSize: o.vocabSize }));
  const config: ModelConfig = start?.model.config ?? modelConfig({
    family: o.family, vocabSize: tok.vocabSize, contextLength: o.context, dModel: o.dModel, nLayers: o.layers,
    nHeads: o.heads, nKvHeads: o.kvHeads, dropout: o.dropout,
  });
  if (o.context > config.contextLength) {
    start?.model.dispose();
    throw new Error(`--context ${o.context} is longer than the model's context length ${config.contextLength} (${path.join(o.from ?? '', 'config.json')}); ` +
      `use --context ${config.contextLength} or less`);
  }
  const context = o.context;
  const trainIds = tokenStream(tok, split.train);
  const evalIds = tokenStream(tok, split.heldOut);
  const model = start?.model ?? new CausalLM(config, { seed: o.seed });
  const data = new TokenWindows(trainIds, context, o.batchSize, o.seed, o.data);
  const canEval = evalIds.length > context + 1;
  // A failed save is rescued once, by keepWeights (a resumable checkpoint in the temp folder), not also by the writer.
  const writer = checkpointWriter(tok, { rescue: false });
  const trainer = new Trainer(model, causalLmObjective, data, {
    lr: o.lr, maxSteps: o.steps, schedule: o.schedule, warmupSteps: o.warmup, seed: o.seed, evalEvery: o.evalEvery,
    checkpointEvery: o.checkpointEvery, outDir: o.out, gradAccumSteps: o.gradAccum, weightDecay: o.weightDecay,
  }, {
    checkpoints: writer,
    evaluate: canEval ? (m) => evaluateLm(m, evalWindows(evalIds, context, o.batchSize)) : undefined,
  });
  try {
    if (o.resume) resumeFrom(trainer as Trainer<unknown>, o.resume);
    // Before step 1: a save that cannot succeed would otherwise throw the trained steps away.
    checkOutputPlace(o.out, { option: '--out', bytesNeeded: checkpointBytes(trainer as Trainer<unknown>, JSON.stringify(tok.toJSON()).length) });
  } catch (e) {
    trainer.dispose();
    model.dispose();
    throw e;
  }
  process.stderr.write(`tunelab: ${o.from ? `from ${o.from}, ` : ''}${config.family} ${model.paramCount().toLocaleString('en-US')} params, vocab ${tok.vocabSize}, ` +
    `context ${context}, ${trainIds.length.toLocaleString('en-US')} training tokens, backend ${info.backend}${info.native?.active ? ` + native GEMM (${info.native.isa}, ${info.native.threads} thread${info.native.threads > 1 ? 's' : ''})` : ''}` +
    `${o.resume ? `, resuming at step ${trainer.step} from ${o.resume}` : ''}\n`);
  const progress = new TerminalProgress(o.steps);
  trainer.on('step', (m) => progress.update(m));
  trainer.on('eval', (e) => { if (!process.stderr.isTTY) process.stderr.write(`eval @${e.step}: loss ${e.evalLoss.toFixed(3)} ppl ${e.perplexity.toFixed(2)}\n`); });
  const events = tensorboard(trainer, o.out); // runs/x/events.out.tfevents.*: `tensorboard --logdir runs`
  const startStep = trainer.step;
  // Ctrl-C: finish the step, save checkpoint-<step>, say how to resume; a second Ctrl-C quits at once.
  const release = stopOnSignal(trainer, {
    onStop: () => process.stderr.write(`\ntunelab: interrupted; saving a checkpoint at the end of the current step (Ctrl-C again to quit without saving)\n`),
    onForce: () => {
      process.stderr.write('\ntunelab: interrupted again; quitting without saving\n');
      process.exit(130);
    },
  });
  let result;
  try {
    result = await trainer.train();
  } catch (e) {
    // A failed checkpoint save (full disk) leaves good weights in memory; a non-finite loss names its last
    // good checkpoint itself.
    if (e instanceof NonFiniteLossError) throw e;
    throw new Error(`${(e as Error).message}; ${await keepWeights(trainer as Trainer<unknown>, writer, o.out)}`);
  } finally {
    release();
    events.close();
  }
  progress.done();
  if (result.interrupted) {
    const ckpt = result.lastCheckpoint!;
    trainer.dispose();
    model.dispose();
    throw new Interrupted(`interrupted after step ${result.steps} of ${o.steps}; checkpoint saved: ${ckpt}\n` +
      `resume with: ${resumeCommand(process.argv, args, ckpt)}`);
  }
  const final = path.join(o.out, 'final');
  try {
    await saveModel(final, model, tok, { rescue: false });
  } catch (e) {
    throw new Error(`saving ${final} failed: ${(e as Error).message}; ${await keepWeights(trainer as Trainer<unknown>, writer, o.out)}`);
  }
  const first = result.history[0];
  const last = result.history.at(-1);
  const ev = result.evals.at(-1);
  const elapsed = result.elapsedMs ?? 0;
  const total = result.totalElapsedMs ?? elapsed;
  const resumed = startStep > 0;
  const summary = {
    steps: result.steps, firstLoss: first?.loss, finalLoss: last?.loss, evalLoss: ev?.evalLoss, evalPerplexity: ev?.perplexity,
    tokensPerSec: last?.tokensPerSec, elapsedMs: elapsed, totalElapsedMs: total, resumedFromStep: resumed ? startStep : undefined,
    stoppedEarly: result.stoppedEarly, saved: final, backend: info.backend,
  };
  const time = resumed
    ? `steps ${startStep + 1}–${result.steps} in ${formatDuration(elapsed)} this run, ${result.steps} steps in ${formatDuration(total)} in all`
    : `${result.steps} steps in ${formatDuration(elapsed)}`;
  print(!!o.json, summary, [
    `trained ${time} (${Math.round(last?.tokensPerSec ?? 0).toLocaleString('en-US')} tok/s)`,
    `loss ${first?.loss.toFixed(3)} → ${last?.loss.toFixed(3)}` + (ev ? `; held-out loss ${ev.evalLoss.toFixed(3)}, perplexity ${ev.perplexity.toFixed(2)}` : ''),
    `saved ${final}`,
  ].join('\n'));
  trainer.dispose();
  model.dispose();
}

async function loadOrFail(dir: string) {
  const { model, tokenizer } = await loadModel(dir);
  if (!tokenizer) {
    model.dispose();
    throw new Error(`${path.join(dir, 'tokenizer.json')}: missing (needed to turn text into tokens)`);
  }
  return { model, tokenizer };
}

async function generateCmd(dir: string, o: { prompt: string; maxNewTokens: number; sample?: boolean; temperature: number; topK: number; topP: number; seed: number; cache: boolean; backend?: string; json?: boolean }) {
  await startEngine(o.backend);
  const { model, tokenizer } = await loadOrFail(dir);
  const prompt = tokenizer.encode(o.prompt);
  if (prompt.length === 0) throw new Error('--prompt must not be empty');
  const eos = tokenizer.specialTokens.eos?.id;
  const t0 = Date.now();
  const out = generate(model, prompt.slice(-model.config.contextLength), {
    maxNewTokens: o.maxNewTokens, doSample: !!o.sample, temperature: o.temperature, topK: o.topK, topP: o.topP,
    seed: o.seed, useCache: o.cache, stopTokens: eos === undefined ? [] : [eos],
  });
  const ms = Date.now() - t0;
  const text = tokenizer.decode(out, { skipSpecialTokens: true });
  print(!!o.json, { prompt: o.prompt, completion: text, tokens: out.length, tokensPerSec: (out.length * 1000) / Math.max(1, ms) }, o.prompt + text);
  model.dispose();
}

async function evalCmd(dir: string, o: { data: string; separator?: string; batchSize: number; json?: boolean; backend?: string }) {
  await startEngine(o.backend);
  const { model, tokenizer } = await loadOrFail(dir);
  const ids = tokenStream(tokenizer, trainingDocuments(o.data, o.separator));
  const r = await evaluateLm(model, evalWindows(ids, model.config.contextLength, o.batchSize, o.data));
  print(!!o.json, { model: dir, data: o.data, loss: r.loss, perplexity: r.perplexity, tokens: r.tokens },
    `${o.data}: loss ${r.loss.toFixed(4)}, perplexity ${r.perplexity.toFixed(3)} over ${r.tokens.toLocaleString('en-US')} tokens`);
  model.dispose();
}

async function exportGgufCmd(dir: string, out: string, o: { f16?: boolean; type?: string; adapter?: string; adapterGguf?: string; name?: string; overwrite?: boolean; backend?: string; json?: boolean }) {
  if (o.f16 && o.type && o.type !== 'f16') throw new Error(`export-gguf: --f16 and --type ${o.type} disagree (--f16 is --type f16)`);
  if (o.adapterGguf && !o.adapter) throw new Error('export-gguf: --adapter-gguf needs --adapter <dir> (the LoRA to write)');
  await startEngine(o.backend);
  const { model, tokenizer } = await loadOrFail(dir);
  try {
    // --adapter-gguf: <out> is the LoRA alone, as a llama.cpp adapter file for the base model's GGUF.
    if (o.adapterGguf) {
      loadAdapter(model, o.adapter!, 'default');
      const r = await exportLoraGguf(model, 'default', out, { name: o.name, overwrite: !!o.overwrite });
      print(!!o.json, { ...r, model: dir, adapter: o.adapter }, `wrote ${r.file} (LoRA adapter GGUF, ${r.tensors} tensors, alpha ${r.alpha})`);
      return;
    }
    // An adapter is folded into the weights: GGUF (and llama.cpp) know only plain base weights.
    if (o.adapter) {
      loadAdapter(model, o.adapter);
      mergeAndUnload(model);
    }
    const type = (o.type ?? (o.f16 ? 'f16' : 'f32')) as GgufWeightType;
    const r = await exportGguf(model, tokenizer, out, { type, name: o.name ?? path.basename(path.resolve(dir)), overwrite: !!o.overwrite });
    print(!!o.json, { ...r, model: dir, adapter: o.adapter ?? null }, `wrote ${r.file} (${r.type}, ${r.tensors} tensors, ${(r.bytes / 1e6).toFixed(1)} MB)`);
  } finally {
    model.dispose();
  }
}

/** Builds the command tree (exported for tests); `argv` (the arguments) goes into `train`'s resume hint. */
export function program(argv: readonly string[] = process.argv.slice(2)): Command {
  const p = new Command('tunelab').version(version).description('Fine-tune language models on TensorFlow.js')
    .showHelpAfterError().exitOverride();
  p.command('info').description('show the tensor engine, backend and versions')
    .addOption(backendOption()).option('--json', 'print JSON')
    .action(async (o: { backend?: string; json?: boolean }) => {
      const e = await startEngine(o.backend);
      const v = { tunelab: version, node: process.version, ...e };
      const hint = buildNativeHint(e.native);
      print(!!o.json, v, [`tunelab ${version} (node ${process.version})`, `backend: ${e.backend} (tfjs ${e.tfjsVersion}, ${e.threads} thread${e.threads > 1 ? 's' : ''})`,
        ...e.skipped.map((s) => `  skipped ${s.backend}: ${s.reason}`), `patched kernels: ${e.patchedKernels.join(', ') || 'none'}`,
        ...(e.native ? [`native GEMM: ${e.native.reason}`] : []), ...(hint ? [hint] : [])].join('\n'));
    });
  p.command('train').description('train a causal LM on a text file or folder, from scratch or --from a saved model')
    .requiredOption('--data <path>', 'text file, folder of .txt/.md files, or .csv/.tsv/.json/.jsonl with a "text" column')
    .option('--from <model>', 'continue training this model folder (its architecture and tokenizer; the shape options below are ignored)')
    .option('--separator <text>', 'split files into documents on this text (\\n allowed), e.g. "\\n\\n\\n"')
    .option('--out <dir>', 'run folder (checkpoints, final model); checked before step 1. Ctrl-C saves checkpoint-<step> there', 'runs/train')
    .addOption(new Option('--family <name>', 'architecture').choices(['llama', 'gpt2']).default('llama'))
    .option('--layers <n>', 'transformer blocks', int('--layers', 1), 4)
    .option('--d-model <n>', 'residual width', int('--d-model', 1), 128)
    .option('--heads <n>', 'attention heads', int('--heads', 1), 4)
    .option('--kv-heads <n>', 'key/value heads (llama grouped-query attention)', int('--kv-heads', 1))
    .option('--context <n>', 'sequence length (at most the model\'s context)', int('--context', 2), 64)
    .option('--vocab-size <n>', 'BPE vocabulary to train', int('--vocab-size', 260), 1024)
    .option('--tokenizer <file>', 'use this tokenizer.json instead of training one')
    .option('--steps <n>', 'optimizer steps', int('--steps', 1), 300)
    .option('--batch-size <n>', 'sequences per step', int('--batch-size', 1), 16)
    .option('--grad-accum <n>', 'micro-batches per step', int('--grad-accum', 1), 1)
    .option('--lr <x>', 'peak learning rate', num('--lr'), 1e-3)
    .addOption(new Option('--schedule <name>', 'lr schedule after warmup').choices(['linear', 'cosine', 'constant']).default('cosine'))
    .option('--warmup <n>', 'warmup steps', int('--warmup'), 20)
    .option('--weight-decay <x>', 'AdamW weight decay', num('--weight-decay', (n) => n >= 0, 'a number ≥ 0'), 0.1)
    .option('--dropout <x>', 'dropout rate', num('--dropout', (n) => n >= 0 && n < 1, 'in [0, 1)'), 0)
    .option('--eval-fraction <x>', 'share of the text held out for evaluation', num('--eval-fraction', (n) => n >= 0 && n < 1, 'in [0, 1)'), 0.05)
    .option('--eval-every <n>', 'evaluate every n steps (0: at the end)', int('--eval-every'), 100)
    .option('--checkpoint-every <n>', 'save a checkpoint every n steps (0: off)', int('--checkpoint-every'), 0)
    .option('--resume <dir>', 'continue from a checkpoint folder of the same run')
    .option('--seed <n>', 'random seed', int('--seed'), 42)
    .addOption(backendOption()).option('--json', 'print the summary as JSON')
    .action((o: TrainOpts) => train(o, argv));
  p.command('generate').description('continue a prompt with a saved model').argument('<model>', 'model folder')
    .requiredOption('--prompt <text>', 'text to continue')
    .option('--max-new-tokens <n>', 'tokens to add', int('--max-new-tokens', 1), 64)
    .option('--sample', 'sample instead of greedy decoding')
    .option('--temperature <x>', 'sampling temperature', num('--temperature'), 1)
    .option('--top-k <n>', 'keep the k most likely tokens (0: off)', int('--top-k'), 0)
    .option('--top-p <x>', 'nucleus sampling mass', num('--top-p', (n) => n > 0 && n <= 1, 'in (0, 1]'), 1)
    .option('--seed <n>', 'sampling seed', int('--seed'), 0)
    .option('--no-cache', 'recompute every position instead of using the KV cache')
    .addOption(backendOption()).option('--json', 'print JSON')
    .action((dir: string, o) => generateCmd(dir, o));
  p.command('eval').description('loss and perplexity of a saved model on a text file or folder').argument('<model>', 'model folder')
    .requiredOption('--data <path>', 'text file or folder, or .csv/.tsv/.json/.jsonl with a "text" column')
    .option('--separator <text>', 'split files into documents on this text (\\n allowed)')
    .option('--batch-size <n>', 'sequences per batch', int('--batch-size', 1), 16)
    .addOption(backendOption()).option('--json', 'print JSON')
    .action((dir: string, o) => evalCmd(dir, o));
  p.command('export-gguf').description('write a model folder as a GGUF file for llama.cpp (llama family)')
    .argument('<model>', 'model or checkpoint folder').argument('<out>', 'output .gguf file')
    .option('--type <type>', 'weight type: f32, f16, q8_0 or q4_0 (llama.cpp blocks; norms stay float32)')
    .option('--f16', 'same as --type f16')
    .option('--adapter <dir>', 'merge this adapter folder (e.g. LoRA) into the weights first')
    .option('--adapter-gguf', 'write the --adapter LoRA alone as a llama.cpp adapter GGUF (load it on the base GGUF)')
    .option('--name <text>', 'general.name in the file (default: the folder name)')
    .option('--overwrite', 'replace an existing output file')
    .addOption(backendOption()).option('--json', 'print JSON')
    .action((dir: string, out: string, o) => exportGgufCmd(dir, out, o));
  registerKernelCommand(p);
  registerServeCommand(p);
  registerDoctorCommand(p);
  registerBuildNativeCommand(p);
  return p;
}

/** Runs the CLI; resolves to the exit code. */
export async function main(argv: string[]): Promise<number> {
  try {
    await program(argv).parseAsync(argv, { from: 'user' });
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 2;
    if (e instanceof Interrupted) {
      process.stderr.write(`tunelab: ${e.message}\n`);
      return 130;
    }
    process.stderr.write(`tunelab: error: ${e instanceof Error ? e.message : String(e)}\n`);
    return 1;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then((code) => { process.exitCode = code; });
}
