/** Shared by the GGUF tests: node-llama-cpp (llama.cpp's prebuilt CPU binary, offline) and greedy decoding on both sides. */
import { generate } from '../../src/model/generate';
import type { CausalLM } from '../../src/model/transformer';
import type { Tokenizer } from '../../src/tokenizer/tokenizer';
import { addLora } from '../../src/peft/lora';
import { saveAdapter } from '../../src/peft/io';
import { sft } from '../../src/train/sft';

export type NodeLlamaCpp = typeof import('node-llama-cpp');
export type Llama = Awaited<ReturnType<NodeLlamaCpp['getLlama']>>;
export type LlamaModel = Awaited<ReturnType<Llama['loadModel']>>;
export type Sequence = ReturnType<Awaited<ReturnType<LlamaModel['createContext']>>['getSequence']>;

// node-llama-cpp is ESM-only. A plain `await import()` would be compiled to require() by tsc's CommonJS
// output (and by tsx/cjs), which only works where Node supports require(esm); Function keeps a real import().
const importEsm = new Function('s', 'return import(s)') as (s: string) => Promise<NodeLlamaCpp>;

/** llama.cpp with the prebuilt binary shipped in the npm package (build 'never': never compile or download). */
export async function openLlama(): Promise<Llama> {
  const { getLlama, LlamaLogLevel } = await importEsm('node-llama-cpp');
  return getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error });
}

/**
 * Loads a GGUF in llama.cpp with one sequence (and optionally a LoRA adapter GGUF), runs `fn`, and frees it
 * again. threads: 1 — more threads than cores make llama.cpp's workers spin (24 tokens took ~40 s instead
 * of ~20 ms on 2 cores). One model at a time: with node-llama-cpp 3.21.1, disposing a model that sat idle
 * while another model evaluated never resolved here, which hung the suite's teardown.
 */
export async function withGguf(llama: Llama, file: string, fn: (m: LlamaModel, seq: Sequence) => Promise<void>, lora?: string): Promise<void> {
  const m = await llama.loadModel({ modelPath: file });
  try {
    const ctx = await m.createContext({ contextSize: 256, threads: 1, ...(lora ? { lora } : {}) });
    await fn(m, ctx.getSequence());
  } finally {
    await m.dispose();
  }
}

/** tunelab's greedy continuation (no stop tokens, so both sides produce exactly `n`). */
export function ours(model: CausalLM, prompt: number[], n: number): number[] {
  return generate(model, prompt, { maxNewTokens: n, doSample: false });
}

/** llama.cpp's greedy continuation: temperature 0 selects node-llama-cpp's greedy sampler; no repeat penalty is set. */
export async function theirs(seq: Sequence, prompt: number[], n: number): Promise<number[]> {
  await seq.clearHistory();
  const out: number[] = [];
  // yieldEogToken: keep going through <|endoftext|>/<|im_end|> as tunelab's generate does without stop tokens.
  for await (const t of seq.evaluate(prompt as never, { temperature: 0, yieldEogToken: true })) {
    out.push(Number(t));
    if (out.length >= n) break;
  }
  return out;
}

/**
 * A copy of `model` with a LoRA (r 8, α 16, all linear layers, so q/k and their RoPE permutation are
 * covered) trained 6 SFT steps on three chat rows, saved to `adapterDir`; still unmerged.
 */
export async function trainedLora(model: CausalLM, tokenizer: Tokenizer, adapterDir: string): Promise<CausalLM> {
  const tuned = model.clone();
  addLora(tuned, { r: 8, alpha: 16, targetModules: 'all-linear', seed: 3 });
  const rows = [
    { prompt: 'What is a shell variable?', completion: ' A name that holds a value in the shell.' },
    { prompt: 'Say hello.', completion: ' Hello there!' },
    { prompt: 'Count to three.', completion: ' One, two, three.' },
  ];
  await sft(tuned, tokenizer, rows, { maxSteps: 6, batchSize: 3, lr: 5e-3, warmupSteps: 0, evalEvery: 0 });
  await saveAdapter(tuned, adapterDir);
  return tuned;
}
