/**
 * Distilled instruction data, self-instruct style (Wang et al. 2023, arXiv 2212.10560; as Alpaca used it): a
 * teacher model is shown a few tasks of a pool (the seed tasks, then also its own accepted ones) and continues
 * the list with new tasks; each new instruction passes length, keyword, format and ROUGE-L novelty filters
 * before it joins the pool; the teacher then answers each instruction. MinHash near duplicates (which ROUGE-L,
 * being order-sensitive, misses when clauses are reordered) and empty answers are dropped and the rows are
 * validated, each step a `Corpus` verb, so the messages-format corpus's report says what each filter removed.
 *
 * The teacher is a tunelab model in this process ({@link modelTeacher}) or any OpenAI-compatible endpoint
 * ({@link endpointTeacher}: `tunelab serve`, vLLM, llama.cpp's server, …).
 *
 * @example
 * const teacher = endpointTeacher('http://127.0.0.1:8000', { model: 'tiny-llama' });
 * const d = await distill(teacher, seedTasks(lab.dataset('instructions').slice(0, 20)), { numInstructions: 50 });
 * console.log(d.corpus.formatReport());
 * await lab.base('tiny-llama').data(d.corpus).sft();
 */
import * as aq from 'arquero';
import type { ColumnTable } from 'arquero';
import type { CausalLM } from '../model/transformer';
import { TokenStepper } from '../model/generate';
import type { Tokenizer } from '../tokenizer/tokenizer';
import { TextAssembler } from '../serve/decode';
import { rougeLTokens, rougeTokens } from '../eval/rouge';
import { Rng } from '../util/rng';
import { checkOptions, withDefaults } from '../util/options';
import { chatmlTemplate, type ChatMessage, type ChatTemplate } from './chat';
import { Corpus } from './corpus';
import { nearDuplicates, type NearDedupeOptions } from './dedupe';
import { cellText } from './text';
import { encodeChat, type SftRow } from './tokenize';

/** Sampling settings of one teacher request. */
export interface TeacherRequest {
  maxTokens: number;
  /** 0 = greedy. */
  temperature: number;
  seed: number;
  /** Strings that end the text (not included). */
  stop?: readonly string[];
}

/** A model that continues text and answers chat turns. */
export interface Teacher {
  /** Names the teacher in reports and the `source` column. */
  readonly name: string;
  complete(prompt: string, request: TeacherRequest): Promise<string>;
  chat(messages: readonly ChatMessage[], request: TeacherRequest): Promise<string>;
}

/**
 * A tunelab model as teacher. Decoding is the server's (`TokenStepper` + `TextAssembler`: seeded sampling,
 * stop strings, end-of-turn for chat), so a model gives the same text here as behind `tunelab serve`.
 *
 * @example
 * const { model, tokenizer } = await base('tiny-llama');
 * const teacher = modelTeacher(model, tokenizer, { name: 'tiny-llama' });
 */
export function modelTeacher(model: CausalLM, tokenizer: Tokenizer, options: { name?: string; template?: ChatTemplate } = {}): Teacher {
  checkOptions(options, ['name', 'template'], 'modelTeacher');
  const template = options.template ?? chatmlTemplate;
  const eos = tokenizer.specialTokens.eos?.id;
  const eot = template.endOfTurn === undefined ? [] : tokenizer.encode(template.endOfTurn);
  const run = async (prompt: number[], r: TeacherRequest, stopTokens: readonly number[], stopStrings: readonly string[]) => {
    const room = model.config.contextLength - model.reservedPositions() - prompt.length;
    if (room < 1) throw new Error(`teacher ${options.name ?? 'model'}: the prompt has ${prompt.length} tokens, leaving no room in the context of ${model.config.contextLength}`);
    const stepper = new TokenStepper(model, prompt, { doSample: r.temperature > 0, temperature: r.temperature, topK: 0, topP: 1, seed: r.seed });
    const text = new TextAssembler(tokenizer, [...(r.stop ?? []), ...stopStrings]);
    try {
      for (let n = 0; n < Math.min(r.maxTokens, room); n++) {
        const id = stepper.next();
        if (stopTokens.includes(id) || text.push(id).stopped) break;
      }
    } finally {
      stepper.dispose();
    }
    text.finish();
    return text.text;
  };
  return {
    name: options.name ?? 'model',
    complete: (prompt, r) => run(tokenizer.encode(prompt), r, eos === undefined ? [] : [eos], []),
    chat: (messages, r) => run(encodeChat(tokenizer, template.render(messages, { addGenerationPrompt: true })).ids, r,
      [...(eos === undefined ? [] : [eos]), ...(eot.length === 1 ? eot : [])], eot.length > 1 && template.endOfTurn ? [template.endOfTurn] : []),
  };
}

/**
 * An OpenAI-compatible endpoint as teacher: `POST <url>/v1/completions` and `/v1/chat/completions`
 * (`url` with or without the `/v1`). Errors name the URL, the HTTP status and the server's message.
 *
 * @example
 * const teacher = endpointTeacher('http://127.0.0.1:8000', { model: 'tiny-llama' });
 */
export function endpointTeacher(url: string, options: { model: string; apiKey?: string; name?: string }): Teacher {
  checkOptions(options, ['model', 'apiKey', 'name'], 'endpointTeacher');
  if (!/^https?:\/\//.test(url)) throw new Error(`endpointTeacher: url must start with http:// or https:// (got "${url}")`);
  if (typeof options.model !== 'string' || !options.model) throw new Error('endpointTeacher: option "model" (the model id the endpoint serves) is required');
  const root = url.replace(/\/+$/, '').replace(/\/v1$/, '');
  const post = async (route: string, body: Record<string, unknown>, r: TeacherRequest): Promise<string> => {
    const target = `${root}/v1/${route}`;
    const payload = { model: options.model, ...body, max_tokens: r.maxTokens, temperature: r.temperature, seed: r.seed, ...(r.stop?.length && { stop: r.stop }) };
    let res: Response;
    try {
      res = await fetch(target, { method: 'POST', headers: { 'content-type': 'application/json', ...(options.apiKey && { authorization: `Bearer ${options.apiKey}` }) }, body: JSON.stringify(payload) });
    } catch (e) {
      throw new Error(`teacher ${target}: ${(e as Error).message}${(e as { cause?: Error }).cause ? ` (${(e as { cause: Error }).cause.message})` : ''}`);
    }
    const json = (await res.json().catch(() => ({}))) as { choices?: { text?: string; message?: { content?: string } }[]; error?: { message?: string } };
    if (!res.ok) throw new Error(`teacher ${target}: HTTP ${res.status}: ${json.error?.message ?? res.statusText}`);
    const choice = json.choices?.[0];
    const text = route === 'completions' ? choice?.text : choice?.message?.content;
    if (typeof text !== 'string') throw new Error(`teacher ${target}: the answer has no choices[0].${route === 'completions' ? 'text' : 'message.content'}`);
    return text;
  };
  return {
    name: options.name ?? options.model,
    complete: (prompt, r) => post('completions', { prompt }, r),
    chat: (messages, r) => post('chat/completions', { messages: messages.map((m) => ({ role: m.role, content: m.content })) }, r),
  };
}

/** A task of the pool: an instruction and, for seeds, the human-written answer. */
export interface SeedTask {
  instruction: string;
  response?: string;
}

/**
 * Seed tasks from SFT rows: a messages row's first user and first assistant turn, or a prompt/completion
 * row. Throws naming the row that has neither.
 *
 * @example
 * seedTasks(lab.dataset('instructions').slice(0, 20));
 */
export function seedTasks(rows: readonly SftRow[] | Corpus): SeedTask[] {
  const list = rows instanceof Corpus ? (rows.rows() as unknown as SftRow[]) : rows;
  return list.map((row, i) => {
    if ('messages' in row) {
      const user = row.messages.find((m) => m.role === 'user');
      const answer = row.messages.find((m) => m.role === 'assistant');
      if (!user) throw new Error(`seedTasks: row ${i} has no user message`);
      return { instruction: user.content, ...(answer && { response: answer.content }) };
    }
    if ('prompt' in row) return { instruction: cellText(row.prompt), response: cellText(row.completion) };
    throw new Error(`seedTasks: row ${i} is neither a messages nor a prompt/completion row (keys: ${Object.keys(row).join(', ')})`);
  });
}

/** Configuration of {@link distill}; defaults follow self-instruct where it has one. */
export interface DistillConfig {
  /** Instructions to accept into the pool (self-instruct ran to 52k). */
  numInstructions: number;
  /** Most instruction-generating requests (a bound when the teacher produces little that passes). */
  maxRequests: number;
  /** Pool tasks shown per request (self-instruct: 8; small contexts need fewer). */
  examplesPerPrompt: number;
  /** Text before the numbered tasks. */
  header: string;
  /** Tokens per instruction request and per answer. */
  instructionTokens: number;
  responseTokens: number;
  /** Sampling temperature of both requests (self-instruct: 0.7). */
  temperature: number;
  seed: number;
  /** Instruction length bounds in words (self-instruct: more than 3, at most 150). */
  minWords: number;
  maxWords: number;
  /** Instructions mentioning one of these are dropped (self-instruct's list: a text model cannot do them). */
  blocklist: readonly string[];
  /** ROUGE-L F1 to a pool instruction at or above which a new one is dropped (self-instruct: 0.7). */
  rougeThreshold: number;
  /** MinHash near-duplicate search against seeds and earlier instructions (default Jaccard ≥ 0.8 over 5-character shingles). */
  near: NearDedupeOptions;
}

/** Defaults of {@link DistillConfig}. Frozen: override by spreading. */
export const distillDefaults: Readonly<DistillConfig> = Object.freeze({
  numInstructions: 20, maxRequests: 60, examplesPerPrompt: 3,
  header: 'Come up with a series of tasks:',
  instructionTokens: 48, responseTokens: 64, temperature: 0.7, seed: 0, minWords: 4, maxWords: 150,
  blocklist: Object.freeze(['image', 'images', 'graph', 'graphs', 'picture', 'pictures', 'file', 'files', 'map', 'maps', 'draw', 'plot', 'go to', 'video', 'audio', 'music', 'flowchart', 'diagram']),
  rougeThreshold: 0.7, near: Object.freeze({ threshold: 0.8 }),
});

/** Why a generated instruction left (or stayed: `accepted`). */
export type CandidateFate = 'accepted' | 'length' | 'blocklist' | 'format' | 'rouge' | 'budget';

/** One parsed instruction of {@link Distilled.candidates}. */
export interface Candidate {
  request: number;
  instruction: string;
  /** Highest ROUGE-L F1 to the pool when it was checked (null when an earlier filter dropped it). */
  rouge: number | null;
  /** The most similar pool instruction. */
  closest: string | null;
  fate: CandidateFate;
}

/** What {@link distill} made. */
export interface Distilled {
  /** Messages-format rows (`messages`, `source`), with the report of each step and filter. */
  corpus: Corpus;
  /** Every instruction parsed from the teacher, with its fate. */
  candidates: ColumnTable;
  /** Teacher requests made: for instructions, and for answers. */
  requests: { instructions: number; responses: number };
  teacher: string;
}

/**
 * The prompt that asks the teacher for new tasks: the header, then `Task k: <instruction>` lines, ending with
 * the next number for the teacher to continue.
 *
 * @example
 * instructionPrompt(['Name a fish.', 'Sort these words.'], 'Come up with a series of tasks:');
 * // 'Come up with a series of tasks:\nTask 1: Name a fish.\nTask 2: Sort these words.\nTask 3:'
 */
export function instructionPrompt(examples: readonly string[], header = distillDefaults.header): string {
  return [header, ...examples.map((e, i) => `Task ${i + 1}: ${oneLine(e)}`), `Task ${examples.length + 1}:`].join('\n');
}

/**
 * Instructions in a teacher's continuation of {@link instructionPrompt}: the text split at `Task <n>:` markers
 * (the first piece continues the open task), each piece up to its first line break, empty pieces dropped.
 *
 * @example
 * parseInstructions(' Name a bird.\nTask 4: Add 2 and 3.\nTask 5:');   // ['Name a bird.', 'Add 2 and 3.']
 */
export function parseInstructions(text: string): string[] {
  return text.split(/\s*Task \d+:/).map((p) => p.trim().split('\n')[0].trim()).filter((p) => p.length > 0);
}

/**
 * Self-instruct: generates, filters and answers instructions; see {@link Distilled} and the module comment.
 * Deterministic for a seed when the teacher is (the pool sample and every request seed derive from it).
 *
 * @example
 * const d = await distill(modelTeacher(model, tok), seedTasks(rows), { numInstructions: 10 });
 * d.corpus.reportTable().print();
 */
export async function distill(teacher: Teacher, seeds: readonly SeedTask[], config: Partial<DistillConfig> = {}): Promise<Distilled> {
  const c = withDefaults(distillDefaults, config, 'distill');
  if (seeds.length === 0) throw new Error('distill: no seed tasks');
  if (!(c.examplesPerPrompt >= 1)) throw new Error(`distill: examplesPerPrompt must be ≥ 1 (got ${c.examplesPerPrompt})`);
  seeds.forEach((s, i) => {
    if (typeof s.instruction !== 'string' || !s.instruction.trim()) throw new Error(`distill: seed task ${i} has no instruction`);
  });
  const pool = seeds.map((s) => s.instruction);
  const poolTokens = pool.map(rougeTokens); // tokenized once: every candidate is scored against the whole pool
  const rng = new Rng(c.seed);
  const blocked = c.blocklist.map((w) => new RegExp(`\\b${w.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\b`, 'i'));
  const candidates: Candidate[] = [];
  let accepted = 0;
  let requests = 0;
  while (accepted < c.numInstructions && requests < c.maxRequests) {
    const shown = rng.shuffle(pool.map((_, i) => i)).slice(0, c.examplesPerPrompt).map((i) => pool[i]);
    const text = await teacher.complete(instructionPrompt(shown, c.header), { maxTokens: c.instructionTokens, temperature: c.temperature, seed: c.seed + requests });
    for (const instruction of parseInstructions(text)) {
      const cand: Candidate = { request: requests, instruction, rouge: null, closest: null, fate: 'accepted' };
      const words = instruction.split(/\s+/).length;
      if (accepted >= c.numInstructions) cand.fate = 'budget';
      else if (words < c.minWords || words > c.maxWords) cand.fate = 'length';
      else if (blocked.some((re) => re.test(instruction))) cand.fate = 'blocklist';
      else if (!/^[A-Za-z0-9"'(]/.test(instruction)) cand.fate = 'format';
      else {
        let best = -1;
        const tokens = rougeTokens(instruction);
        poolTokens.forEach((p, i) => {
          const s = rougeLTokens(tokens, p).f1;
          if (s > cand.rouge! || best < 0) [cand.rouge, best] = [s, i];
        });
        cand.closest = pool[best];
        if (cand.rouge! >= c.rougeThreshold) cand.fate = 'rouge';
        else {
          pool.push(instruction);
          poolTokens.push(tokens);
          accepted++;
        }
      }
      candidates.push(cand);
    }
    requests++;
  }

  if (candidates.length === 0) throw new Error(`distill: the teacher's answers to ${requests} requests held no instruction (a "Task <n>: …" line); try more instructionTokens or a stronger teacher`);
  // MinHash over seeds then accepted instructions in order: an instruction close to an earlier one goes.
  const kept = candidates.filter((x) => x.fate === 'accepted');
  const near = nearDuplicates([...seeds.map((s) => s.instruction), ...kept.map((x) => x.instruction)], c.near);
  const nearDup = new Set(kept.filter((_, k) => near.duplicateOf[seeds.length + k] >= 0).map((x) => x.instruction));
  const wordRange = `[${c.minWords}, ${c.maxWords}]`;
  const parsed = aq.from(candidates.map((x) => ({ instruction: x.instruction, fate: x.fate })));
  let corpus = new Corpus(parsed, [{ step: 'generate', removed: 0, kept: parsed.numRows(), reason: `instructions parsed from ${requests} requests to ${teacher.name}` }], `distilled from ${teacher.name}`)
    .filter((r) => r.fate !== 'length', `instruction outside ${wordRange} words`)
    .filter((r) => r.fate !== 'blocklist', `instruction names something a text model cannot do (${c.blocklist.join(', ')})`)
    .filter((r) => r.fate !== 'format', 'instruction starts with punctuation or a non-ASCII character')
    .filter((r) => r.fate !== 'rouge', `ROUGE-L F1 ≥ ${c.rougeThreshold} to a seed or an earlier instruction`)
    .filter((r) => r.fate !== 'budget', `beyond numInstructions (${c.numInstructions})`)
    .filter((r) => !nearDup.has(String(r.instruction)), `MinHash near duplicate (Jaccard ≥ ${c.near.threshold ?? 0.8}) of a seed or an earlier instruction`);

  const instructions = corpus.table.array('instruction') as string[];
  const responses: string[] = [];
  for (let i = 0; i < instructions.length; i++) {
    const answer = await teacher.chat([{ role: 'user', content: instructions[i] }], { maxTokens: c.responseTokens, temperature: c.temperature, seed: c.seed + 100_003 + i });
    responses.push(answer.trim());
  }
  const source = `distilled:${teacher.name}`;
  corpus = corpus
    .pipe((t) => t.assign(aq.table({
      messages: instructions.map((q, i) => [{ role: 'user', content: q }, { role: 'assistant', content: responses[i] }]),
      source: instructions.map(() => source),
    })).select('messages', 'source'), `teacher answers (${instructions.length} chat requests), messages format`)
    .filter((r) => cellText((r.messages as ChatMessage[])[1].content).length > 0, 'empty answer')
    .validate('messages', { skipBad: true });
  return { corpus, candidates: aq.from(candidates), requests: { instructions: requests, responses: instructions.length }, teacher: teacher.name };
}

const oneLine = (s: string) => s.replace(/\s+/g, ' ').trim();
