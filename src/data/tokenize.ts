/**
 * Dataset rows → token ids with a loss mask, following TRL's SFT/DPO preprocessing.
 *
 * Four row formats (TRL's names): language modeling `{text}`, prompt-completion `{prompt, completion}`,
 * conversational `{messages}`, and preference `{prompt, chosen, rejected}`. Prompts and completions may
 * be strings or message lists. Each row becomes `{ids, lossMask}`, where `lossMask[i]` says whether
 * token i counts toward the loss as a *target* (batches.ts shifts it onto the predicting position):
 *
 * | format | counted tokens |
 * |---|---|
 * | text | all, plus an appended EOS (TRL adds EOS to text) |
 * | prompt-completion | completion + appended EOS (`completionOnlyLoss`, default true as TRL); else all |
 * | messages | all, or with `assistantOnlyLoss` only assistant content + its end-of-turn token |
 * | preference | chosen / rejected completions only; both share the prompt's ids |
 *
 * Prompt and completion are tokenized separately and concatenated (TRL tokenizes prompt+completion
 * jointly and warns when the prompt's ids are not a prefix). Separate encoding makes the boundary exact
 * and matches inference, where the prompt is encoded alone and the model continues it.
 */
import type { Tokenizer } from '../tokenizer/tokenizer';
import { withDefaults } from '../util/options';
import { chatmlTemplate, validateMessages, type ChatMessage, type ChatSegment, type ChatTemplate, type RenderedChat } from './chat';

/** A prompt or completion: plain text or turns of a conversation. */
export type Content = string | readonly ChatMessage[];

/** Language modeling row. */
export interface TextRow {
  text: string;
}

/** Prompt-completion row (TRL's "prompt-only" plus completion). */
export interface PromptCompletionRow {
  prompt: Content;
  completion: Content;
}

/** Conversational row. */
export interface MessagesRow {
  messages: readonly ChatMessage[];
}

/**
 * Preference row. Without `prompt`, the common start of chosen and rejected becomes the prompt
 * (TRL's implicit prompt: whole leading messages, or leading text up to a space).
 */
export interface PreferenceRow {
  prompt?: Content;
  chosen: Content;
  rejected: Content;
}

/** Rows that give one training example each. */
export type SftRow = TextRow | PromptCompletionRow | MessagesRow;

/** The format of a row, see {@link rowFormat}. */
export type RowFormat = 'text' | 'prompt-completion' | 'messages' | 'preference';

/** What to do with examples longer than `maxLength`. */
export type TruncationMode = 'keep_start' | 'drop';

/** Options of {@link tokenizeRow} and friends. Start from {@link tokenizeDefaults}. */
export interface TokenizeConfig {
  /** Longest example in tokens (TRL `max_length`: 1024); `null` keeps every token. */
  maxLength: number | null;
  /** `keep_start` cuts the end off (TRL's default); `drop` leaves the example out. */
  truncation: TruncationMode;
  /** Prompt-completion rows: count only the completion (TRL: true for such datasets). */
  completionOnlyLoss: boolean;
  /** Conversations: count only assistant content and its end-of-turn token (TRL: false). */
  assistantOnlyLoss: boolean;
  /** Renders `messages`; default ChatML. */
  template: ChatTemplate;
  /** Prepend BOS to text, prompts and string preference rows (chat templates write their own). */
  addBos: boolean;
  /** Whether special-token strings in plain-text fields become special ids (HF: true). */
  parseSpecial: boolean;
}

/**
 * Defaults (TRL's SFTConfig where it has the knob). Frozen: override by spreading.
 *
 * @example
 * const config: TokenizeConfig = { ...tokenizeDefaults, maxLength: 256, assistantOnlyLoss: true };
 */
export const tokenizeDefaults: Readonly<TokenizeConfig> = Object.freeze({
  maxLength: 1024,
  truncation: 'keep_start',
  completionOnlyLoss: true,
  assistantOnlyLoss: false,
  template: chatmlTemplate,
  addBos: false,
  parseSpecial: true,
});

/** One tokenized example. */
export interface TokenizedExample {
  ids: number[];
  /** 1 where the token counts toward the loss (as a prediction target), else 0; same length as ids. */
  lossMask: number[];
  /** Tokens of the prompt (prompt-completion and preference rows; 0 otherwise), after truncation. */
  promptLength: number;
  /** Length before truncation. */
  fullLength: number;
}

/** A preference row tokenized: two examples whose first `promptLength` ids are the same prompt. */
export interface PreferencePair {
  chosen: TokenizedExample;
  rejected: TokenizedExample;
}

/** Counts from tokenizing a dataset. */
export interface TokenizeReport {
  rows: number;
  /** Examples (or pairs) returned. */
  kept: number;
  /** Returned examples cut to `maxLength` (a pair counts once). */
  truncated: number;
  /** Rows left out by `truncation: 'drop'`. */
  dropped: number;
  /** Returned examples with no target token counted (e.g. a prompt longer than `maxLength`). */
  noLoss: number;
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

/**
 * The format of a row, from its keys (as TRL detects it). Throws naming the keys when none fits.
 *
 * @example
 * rowFormat({ prompt: 'Q', completion: 'A' }); // 'prompt-completion'
 */
export function rowFormat(row: unknown): RowFormat {
  if (!isObject(row)) throw new TypeError(`row must be an object, got ${Array.isArray(row) ? 'an array' : typeof row}`);
  // Same order as formats.ts's detectFormat.
  if ('chosen' in row && 'rejected' in row) return 'preference';
  if ('prompt' in row && 'completion' in row) return 'prompt-completion';
  if ('messages' in row) return 'messages';
  if ('text' in row) return 'text';
  throw new TypeError(`row has none of the known formats (text | prompt+completion | messages | prompt+chosen+rejected); keys: ${Object.keys(row).join(', ') || 'none'}`);
}

/**
 * Tokenizes a rendered chat segment by segment: literal segments (message content) without parsing
 * special-token strings, markup with. `assistantMask` marks tokens of assistant segments.
 *
 * @example
 * const { ids, assistantMask } = encodeChat(tok, chatmlTemplate.render(messages, { addGenerationPrompt: true }));
 */
export function encodeChat(tok: Tokenizer, chat: Pick<RenderedChat, 'segments'>): { ids: number[]; assistantMask: number[] } {
  const ids: number[] = [];
  const assistantMask: number[] = [];
  for (const s of chat.segments) {
    const piece = tok.encode(s.text, { parseSpecial: !s.literal });
    ids.push(...piece);
    for (let i = 0; i < piece.length; i++) assistantMask.push(s.assistant ? 1 : 0);
  }
  return { ids, assistantMask };
}

/** The segments of `chat` from character `from` on, splitting the one that straddles it. */
function segmentsFrom(chat: RenderedChat, from: number): ChatSegment[] {
  const out: ChatSegment[] = [];
  let pos = 0;
  for (const s of chat.segments) {
    const end = pos + s.text.length;
    if (end > from) out.push(pos >= from ? s : { ...s, text: s.text.slice(from - pos) });
    pos = end;
  }
  return out;
}

/** The end-of-turn string must be one token, or the mask's "end-of-turn token" would be several bytes. */
function checkTemplate(tok: Tokenizer, template: ChatTemplate): void {
  const eot = template.endOfTurn;
  if (eot && tok.encode(eot).length !== 1) {
    throw new Error(`${template.name}: end-of-turn "${eot}" is not a single token of ${tok.source}; train the tokenizer with it as a special token (e.g. imEndToken) or use the model's own chat template`);
  }
}

/** Prompt and completion ids, plus which tokens are assistant text (chats; all 1 for strings). */
interface Parts {
  prompt: number[];
  promptAssistant: number[];
  completion: number[];
  completionAssistant: number[];
}

function eosId(tok: Tokenizer): number {
  const eos = tok.specialTokens.eos;
  if (!eos) throw new Error(`${tok.source} has no eos token, which prompt-completion and text rows end with`);
  return eos.id;
}

/** Text ids, with BOS when asked and EOS appended unless the text already ends with it (TRL's add_eos). */
function encodeText(tok: Tokenizer, text: string, config: TokenizeConfig, bos: boolean, eos: boolean): number[] {
  const ids = tok.encode(text, { parseSpecial: config.parseSpecial, addBos: bos && config.addBos });
  if (eos && ids[ids.length - 1] !== eosId(tok)) ids.push(eosId(tok));
  return ids;
}

function splitParts(tok: Tokenizer, prompt: Content, completion: Content, config: TokenizeConfig, where: string): Parts {
  if (typeof prompt === 'string' && typeof completion === 'string') {
    const p = encodeText(tok, prompt, config, true, false);
    const c = encodeText(tok, completion, config, false, true);
    return { prompt: p, promptAssistant: p.map(() => 1), completion: c, completionAssistant: c.map(() => 1) };
  }
  if (typeof prompt === 'string' || typeof completion === 'string') throw new TypeError(`${where}: prompt and completion must both be strings or both be message lists`);
  validateMessages(prompt, `${where}.prompt`);
  validateMessages(completion, `${where}.completion`);
  checkTemplate(tok, config.template);
  const head = config.template.render(prompt, { addGenerationPrompt: true });
  const full = config.template.render([...prompt, ...completion]);
  if (!full.text.startsWith(head.text)) {
    throw new Error(`${where}: ${config.template.name} renders the prompt with its generation prompt differently from the start of prompt+completion, so the completion cannot be located`);
  }
  const first = encodeChat(tok, head);
  const rest = encodeChat(tok, { segments: segmentsFrom(full, head.text.length) });
  return { prompt: first.ids, promptAssistant: first.assistantMask, completion: rest.ids, completionAssistant: rest.assistantMask };
}

/** Cuts to maxLength under the policy; null when dropped. */
function finish(ids: number[], lossMask: number[], promptLength: number, config: TokenizeConfig): TokenizedExample | null {
  const max = config.maxLength;
  if (max !== null && (!Number.isInteger(max) || max < 1)) throw new RangeError(`maxLength must be a positive integer or null (got ${max})`);
  const fullLength = ids.length;
  if (max === null || ids.length <= max) return { ids, lossMask, promptLength, fullLength };
  if (config.truncation === 'drop') return null;
  if (config.truncation !== 'keep_start') throw new RangeError(`truncation must be 'keep_start' or 'drop' (got ${String(config.truncation)})`);
  return { ids: ids.slice(0, max), lossMask: lossMask.slice(0, max), promptLength: Math.min(promptLength, max), fullLength };
}

function promptCompletionExample(p: Parts, config: TokenizeConfig, completionOnly: boolean): TokenizedExample | null {
  const ids = [...p.prompt, ...p.completion];
  // Two independent restrictions: completion-only zeroes the prompt; assistant-only keeps assistant spans.
  const only = (assistant: number[]) => (config.assistantOnlyLoss ? assistant : assistant.map(() => 1));
  const lossMask = [...(completionOnly ? p.prompt.map(() => 0) : only(p.promptAssistant)), ...only(p.completionAssistant)];
  return finish(ids, lossMask, p.prompt.length, config);
}

/**
 * Tokenizes one SFT row (text, prompt-completion or messages); `null` when `truncation: 'drop'` drops it.
 *
 * @example
 * const ex = tokenizeRow({ prompt: 'Q: 2+2?\nA:', completion: ' 4' }, tok)!;
 * ex.lossMask; // 0 on the prompt's ids, 1 on ' 4' and the EOS after it
 */
export function tokenizeRow(row: SftRow, tok: Tokenizer, config: Readonly<TokenizeConfig> = tokenizeDefaults, where = 'row'): TokenizedExample | null {
  const format = rowFormat(row);
  if (format === 'text') {
    const { text } = row as TextRow;
    if (typeof text !== 'string') throw new TypeError(`${where}.text must be a string`);
    const ids = encodeText(tok, text, config, true, true);
    return finish(ids, ids.map(() => 1), 0, config);
  }
  if (format === 'prompt-completion') {
    const { prompt, completion } = row as PromptCompletionRow;
    return promptCompletionExample(splitParts(tok, prompt, completion, config, where), config, config.completionOnlyLoss);
  }
  if (format === 'messages') {
    const messages = validateMessages((row as MessagesRow).messages, `${where}.messages`);
    if (messages.length === 0) throw new Error(`${where}.messages is empty`);
    checkTemplate(tok, config.template);
    const { ids, assistantMask } = encodeChat(tok, config.template.render(messages));
    return finish(ids, config.assistantOnlyLoss ? assistantMask : ids.map(() => 1), 0, config);
  }
  throw new TypeError(`${where}: a preference row gives two examples; use tokenizePreferenceRow`);
}

/**
 * TRL's implicit prompt: the longest common prefix of chosen and rejected (whole messages for chats;
 * characters for strings, leaving a space before the split to the completions).
 */
function implicitPrompt(chosen: Content, rejected: Content, where: string): [Content, Content, Content] {
  if (typeof chosen === 'string' && typeof rejected === 'string') {
    let n = 0;
    while (n < chosen.length && n < rejected.length && chosen[n] === rejected[n]) n++;
    if (n > 0 && chosen[n - 1] === ' ') n--;
    if (n === 0) throw new Error(`${where}: no prompt, and chosen and rejected share no leading text to use as one`);
    return [chosen.slice(0, n), chosen.slice(n), rejected.slice(n)];
  }
  if (typeof chosen === 'string' || typeof rejected === 'string') throw new TypeError(`${where}: chosen and rejected must both be strings or both be message lists`);
  let n = 0;
  while (n < chosen.length && n < rejected.length && chosen[n].role === rejected[n].role && chosen[n].content === rejected[n].content) n++;
  if (n === 0) throw new Error(`${where}: no prompt, and chosen and rejected share no leading messages to use as one`);
  return [chosen.slice(0, n), chosen.slice(n), rejected.slice(n)];
}

/**
 * Tokenizes a preference row into chosen and rejected examples. The prompt is encoded once, so both
 * start with identical ids; only completion tokens (with EOS for strings) count, as DPO's log-probs
 * sum over the completion. `assistantOnlyLoss` further limits chat completions to assistant spans.
 * `null` when either side is dropped by `truncation: 'drop'`.
 *
 * @example
 * const pair = tokenizePreferenceRow({ prompt: 'Sky?', chosen: ' blue', rejected: ' green' }, tok)!;
 * pair.chosen.ids.slice(0, pair.chosen.promptLength); // same as pair.rejected's
 */
export function tokenizePreferenceRow(row: PreferenceRow, tok: Tokenizer, config: Readonly<TokenizeConfig> = tokenizeDefaults, where = 'row'): PreferencePair | null {
  if (rowFormat(row) !== 'preference') throw new TypeError(`${where}: not a preference row (needs chosen and rejected)`);
  const [prompt, chosen, rejected] = row.prompt === undefined ? implicitPrompt(row.chosen, row.rejected, where) : [row.prompt, row.chosen, row.rejected];
  const c = splitParts(tok, prompt, chosen, config, `${where}.chosen`);
  const r = splitParts(tok, prompt, rejected, config, `${where}.rejected`);
  const a = promptCompletionExample(c, config, true);
  const b = promptCompletionExample({ ...r, prompt: c.prompt, promptAssistant: c.promptAssistant }, config, true);
  return a && b ? { chosen: a, rejected: b } : null;
}

/** Where a row is, for errors: its file and row when `load` recorded them, else its index. */
function rowName(row: object, i: number): string {
  const { __file: file, __row: line } = row as { __file?: unknown; __row?: unknown };
  return typeof file === 'string' && typeof line === 'number' ? `${file}: row ${line}` : `rows[${i}]`;
}

const counts = (ex: TokenizedExample) => ({ truncated: ex.ids.length < ex.fullLength, noLoss: !ex.lossMask.some((m, i) => i > 0 && m === 1) });

/**
 * Tokenizes SFT rows and reports truncation. Errors name the row index. Options left out take
 * {@link tokenizeDefaults}; a misspelt option name throws.
 *
 * @example
 * const { examples, report } = tokenizeRows(rows, tok, { ...tokenizeDefaults, maxLength: 256 });
 * console.log(`${report.truncated} of ${report.rows} rows truncated`);
 */
export function tokenizeRows(rows: readonly SftRow[], tok: Tokenizer, options: Readonly<Partial<TokenizeConfig>> = tokenizeDefaults): { examples: TokenizedExample[]; report: TokenizeReport } {
  const config = withDefaults(tokenizeDefaults, options, 'tokenizeRows');
  const examples: TokenizedExample[] = [];
  const report: TokenizeReport = { rows: rows.length, kept: 0, truncated: 0, dropped: 0, noLoss: 0 };
  rows.forEach((row, i) => {
    const ex = tokenizeRow(row, tok, config, rowName(row, i));
    if (!ex) return void report.dropped++;
    const c = counts(ex);
    report.truncated += c.truncated ? 1 : 0;
    report.noLoss += c.noLoss ? 1 : 0;
    examples.push(ex);
  });
  report.kept = examples.length;
  return { examples, report };
}

/**
 * Tokenizes preference rows into pairs and reports truncation (a pair counts once).
 *
 * @example
 * const { pairs, report } = tokenizePreferenceRows(rows, tok);
 */
export function tokenizePreferenceRows(rows: readonly PreferenceRow[], tok: Tokenizer, options: Readonly<Partial<TokenizeConfig>> = tokenizeDefaults): { pairs: PreferencePair[]; report: TokenizeReport } {
  const config = withDefaults(tokenizeDefaults, options, 'tokenizePreferenceRows');
  const pairs: PreferencePair[] = [];
  const report: TokenizeReport = { rows: rows.length, kept: 0, truncated: 0, dropped: 0, noLoss: 0 };
  rows.forEach((row, i) => {
    const pair = tokenizePreferenceRow(row, tok, config, rowName(row, i));
    if (!pair) return void report.dropped++;
    const a = counts(pair.chosen);
    const b = counts(pair.rejected);
    report.truncated += a.truncated || b.truncated ? 1 : 0;
    report.noLoss += a.noLoss || b.noLoss ? 1 : 0;
    pairs.push(pair);
  });
  report.kept = pairs.length;
  return { pairs, report };
}
