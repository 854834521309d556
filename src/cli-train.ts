/**
 * Pieces of `tunelab train` beyond the loop: which documents a `--data` path holds, the command that resumes
 * an interrupted run, and where the weights go when the final save fails.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { formatFromExtension, loadTable, textDocuments } from './data/load';
import { validateDataset, FORMAT_COLUMNS } from './data/formats';
import type { Trainer } from './train/trainer';
import type { CheckpointIO } from './train/trainer';

/** The format a file's extension names when it is a structured dataset (CSV, TSV, JSON, JSONL), else undefined. */
function structuredFormat(target: string): string | undefined {
  try {
    if (fs.statSync(target).isDirectory()) return undefined;
    const f = formatFromExtension(target);
    return f === 'text' ? undefined : f;
  } catch {
    return undefined; // missing (the text reader names it) or an extension that is no dataset format: text
  }
}

/**
 * The documents to train a causal LM on: text files and folders as they are (split on `separator`);
 * CSV/TSV/JSON/JSONL through the dataset loader, one document per row of the `text` column (errors name
 * file, row and column). Chat, prompt-completion and preference rows are refused with what to use instead:
 * read as raw text they would teach the model JSON syntax.
 */
export function trainingDocuments(target: string, separator?: string): string[] {
  const format = structuredFormat(target);
  if (!format) return textDocuments(target, separator);
  if (separator !== undefined) throw new Error(`--separator splits text files; ${target} is ${format}, whose rows are the documents`);
  const { table, format: kind } = validateDataset(loadTable(target));
  if (kind !== 'text') {
    const [method, verb] = kind === 'preference' ? ['dpo() or trainRewardModel()', 'dpo'] : kind === 'unpaired-preference' ? ['kto()', 'kto'] : ['sft()', 'sft'];
    throw new Error(`${target}: ${kind} rows (columns ${FORMAT_COLUMNS[kind].join(', ')}); \`tunelab train\` and \`eval\` read plain text: ` +
      `a "text" column or a .txt/.md file. For these rows use the library's ${method} (or lab's .${verb}())`);
  }
  return table.array('text') as string[];
}

/** Quotes an argument for a POSIX shell when it needs it. */
function shellQuote(a: string): string {
  return /^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`;
}

/**
 * The command line that continues this run from `checkpoint`: the same program and arguments, with
 * `--resume` replaced or added. `argv` is `process.argv`-shaped (runtime, script, arguments).
 */
export function resumeCommand(argv: readonly string[], args: readonly string[], checkpoint: string): string {
  const script = argv[1] ?? 'tunelab';
  const rel = path.relative(process.cwd(), script) || script;
  const program = path.basename(script) === 'tunelab' ? 'tunelab' : script.endsWith('.ts') ? `npx tsx ${rel}` : `node ${rel}`;
  const kept: string[] = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--resume') i++;
    else if (!args[i].startsWith('--resume=')) kept.push(args[i]);
  }
  return [program, ...kept, '--resume', checkpoint].map((a, i) => (i === 0 ? a : shellQuote(a))).join(' ');
}

/**
 * After a save failed (the final model, or a checkpoint on a full disk): writes a resumable checkpoint of
 * `trainer` (a model folder too) into the temp folder, usually another disk, and returns the clause that
 * tells the user where the weights are, or that they could not be kept.
 */
export async function keepWeights(trainer: Trainer<unknown>, writer: CheckpointIO, runName: string): Promise<string> {
  const dir = path.join(os.tmpdir(), `tunelab-${path.basename(path.resolve(runName))}-checkpoint-${trainer.step}-${process.pid}`);
  try {
    await writer.save(dir, trainer);
    return `the weights after step ${trainer.step} are kept in ${dir} (a checkpoint: a model folder that --resume also takes)`;
  } catch (e) {
    return `the weights could not be kept in ${os.tmpdir()} either (${(e as Error).message})`;
  }
}
