/**
 * What SFT changes in a base's answers (issue 14): runs the README's SFT recipe on a shipped base
 * (`lab.base(name).data(lab.dataset('instructions')).lora().sft({ epochs: 1 })`), then asks the base and the
 * tuned model 10 held-out instructions (every 20th held-out row, so every source appears) and writes both
 * answers into the base's card (models/<name>/README.md, section "After SFT", replaced whole: redo the
 * written reading of the answers after a --write) and prints them.
 *
 *   npx tsx bench/sft-answers.ts [--base small-llama] [--write]
 */
import * as fs from 'fs';
import * as path from 'path';
import { lab } from '../src/lab/lab';
import { dataset } from '../src/lab/data';
import { base, modelsDir } from '../src/lab/base';
import { chatPrompt, generationSamples } from '../src/eval/metrics';
import { writeFileAtomic } from '../src/io/atomic';
import { argValue } from './common';

async function main() {
  const name = argValue('base', 'small-llama');
  const held = dataset('instructions', 'heldout');
  const rows = held.filter((_, i) => i % 20 === 0).slice(0, 10) as { messages: { role: string; content: string }[]; source: string }[];
  const questions = rows.map((r) => r.messages.find((m) => m.role === 'user')!.content);
  const started = Date.now();
  // The base's answers, asked exactly as Run.ask asks (ChatML prompt, greedy, stop at <|im_end|>).
  const b = await base(name);
  const before = generationSamples(b.model, b.tokenizer, questions, { format: chatPrompt(), maxNewTokens: 48 }).map((r) => ({ answer: r.completion.trim() }));
  b.model.dispose();
  const run = await lab.base(name).show(false).data(lab.dataset('instructions')).lora().sft({ epochs: 1 });
  const minutes = ((Date.now() - started) / 60000).toFixed(1);
  const after = run.answers(questions, { maxNewTokens: 48 });
  const oneLine = (s: string) => s.replace(/\s+/g, ' ').trim();
  const section = `## After SFT: answers to 10 held-out instructions

The README's recipe, \`lab.base('${name}').data(lab.dataset('instructions')).lora().sft({ epochs: 1 })\`
(LoRA r 8, one epoch of datasets/instructions/train.jsonl, seed 42; ${minutes} min with the answers), then
greedy answers (48 new tokens at most) to every 20th row of datasets/instructions/heldout.jsonl, by
\`npx tsx bench/sft-answers.ts --base ${name} --write\`. The reference answer is the dataset's.

${rows.map((r, i) => `### ${i + 1}. ${oneLine(questions[i])} (${r.source})

- base: ${oneLine(before[i].answer) || '(nothing)'}
- after SFT: ${oneLine(after[i].answer) || '(nothing)'}
- reference: ${oneLine(r.messages.find((m) => m.role === 'assistant')!.content).slice(0, 300)}`).join('\n\n')}
`;
  console.log(section);
  if (process.argv.includes('--write')) {
    const card = path.join(modelsDir, name, 'README.md');
    const text = fs.readFileSync(card, 'utf8');
    // The section sits just before "## Limits" (pretrain.ts writes that last), replacing an earlier one.
    const end = text.indexOf('## Limits');
    if (end < 0) throw new Error(`${card}: no "## Limits" section to place the answers before`);
    const at = text.indexOf('## After SFT');
    writeFileAtomic(card, text.slice(0, at >= 0 ? at : end) + section + '\n' + text.slice(end));
    console.log(`wrote ${card}`);
  }
}

main().catch((e) => {
  console.error(`sft-answers: ${e instanceof Error ? e.stack : String(e)}`);
  process.exit(1);
});
