import { strict as assert } from 'assert';
import * as tf from '@tensorflow/tfjs';
import { CausalLM } from '../../src/model';
import { Tokenizer } from '../../src/tokenizer/tokenizer';
import { dataset } from '../../src/lab/data';
import type { MessagesRow } from '../../src/data/tokenize';
import { tokenizeRows, tokenizeDefaults } from '../../src/data/tokenize';
import { createServer } from '../../src/serve/server';
import { sft } from '../../src/train/sft';
import { heldOutLoss } from '../../src/eval/metrics';
import { distill, endpointTeacher, instructionPrompt, modelTeacher, parseInstructions, seedTasks, type Teacher } from '../../src/data/distill';
import { engineReady } from '../helpers';

/** A teacher that answers from a script, and records what it was asked. */
function scripted(instructions: string[], answer: (q: string) => string): Teacher & { prompts: string[] } {
  const prompts: string[] = [];
  let k = 0;
  return {
    name: 'script', prompts,
    complete: async (prompt) => {
      prompts.push(prompt);
      return instructions[k++] ?? '';
    },
    chat: async (messages) => answer(messages[0].content),
  };
}

describe('data/distill: self-instruct from a teacher', function () {
  this.timeout(180_000);
  before(engineReady);

  it('builds the task prompt and parses the continuation', () => {
    assert.equal(instructionPrompt(['Name a fish.', 'Sort these\nwords.'], 'Tasks:'), 'Tasks:\nTask 1: Name a fish.\nTask 2: Sort these words.\nTask 3:');
    assert.deepEqual(parseInstructions(' Name a bird.\nmore text\nTask 4: Add 2 and 3.\nTask 5:'), ['Name a bird.', 'Add 2 and 3.']);
    assert.deepEqual(parseInstructions('\n\n'), []);
  });

  it('seed tasks from messages and prompt/completion rows; bad rows named', () => {
    assert.deepEqual(seedTasks([{ messages: [{ role: 'system', content: 's' }, { role: 'user', content: 'q' }, { role: 'assistant', content: 'a' }] }, { prompt: 'p', completion: 'c' }]),
      [{ instruction: 'q', response: 'a' }, { instruction: 'p', response: 'c' }]);
    assert.throws(() => seedTasks([{ text: 'x' }]), /seedTasks: row 0 is neither a messages nor a prompt\/completion row \(keys: text\)/);
  });

  it('reports what each filter removed (hand-counted fixture)', async () => {
    const seeds = [{ instruction: 'Explain what a shell variable is and how to set it.' }, { instruction: 'Write a loop that prints the numbers from one to ten.' }];
    // Request 1 (5 parsed): accepted, too short, blocklisted, ROUGE-L copy of seed 0 (0.9), accepted.
    // Request 2 (4 parsed): starts with punctuation; request 1's first with its clauses swapped (ROUGE-L 0.62, so
    // accepted, but MinHash Jaccard 0.87); accepted (empty answer); accepted.
    // Request 3 (3 parsed): request 2's last again (ROUGE-L 1), accepted (the 6th), one beyond the budget.
    const t = scripted([
      ' Describe how the tar command creates an archive and how gzip compresses it.\nTask 4: Hi there\nTask 5: Draw a picture of a whale for me.\nTask 6: Explain what a shell variable is and how you set it.\nTask 7: List three uses of the grep command.',
      ' - Say what a pipe does in a shell.\nTask 4: Describe how gzip compresses it and how the tar command creates an archive.\nTask 5: Give the reason for an empty reply here.\nTask 6: Name the signal that Ctrl-C sends to a process.',
      ' Name the signal that Ctrl-C sends to a process.\nTask 4: Tell me which command shows free disk space.\nTask 5: One more task that is not needed.',
    ], (q) => (q.startsWith('Give the reason') ? '   ' : q.startsWith('Name the signal') ? 'SIGINT.' : `Answer: ${q}`));
    const d = await distill(t, seeds, { numInstructions: 6, maxRequests: 5, examplesPerPrompt: 2, seed: 1 });
    assert.equal(d.requests.instructions, 3);
    assert.equal(t.prompts.length, 3);
    assert.match(t.prompts[0], /^Come up with a series of tasks:\nTask 1: .+\nTask 2: .+\nTask 3:$/);
    assert.deepEqual(d.corpus.report.map((e) => [e.step, e.removed, e.kept]), [
      ['generate', 0, 12],
      ['filter', 1, 11],   // "Hi there": 2 words
      ['filter', 1, 10],   // draw / picture
      ['filter', 1, 9],    // "- Say …"
      ['filter', 2, 7],    // ROUGE-L: the shell-variable copy of seed 0, the repeated Ctrl-C task
      ['filter', 1, 6],    // beyond numInstructions (6 accepted before it)
      ['filter', 1, 5],    // MinHash near copy (clauses swapped)
      ['pipe', 0, 5],
      ['filter', 1, 4],    // empty answer
      ['validate', 0, 4],
    ]);
    assert.deepEqual(d.corpus.report.map((e) => e.reason.slice(0, 24)), [
      'instructions parsed from', 'instruction outside [4, ', 'instruction names someth', 'instruction starts with ', 'ROUGE-L F1 ≥ 0.7 to a se',
      'beyond numInstructions (', 'MinHash near duplicate (', 'teacher answers (5 chat ', 'empty answer', 'all rows are valid messa',
    ]);
    assert.equal(d.requests.responses, 5);
    const fates = d.candidates.array('fate') as string[];
    assert.deepEqual(fates, ['accepted', 'length', 'blocklist', 'rouge', 'accepted', 'format', 'accepted', 'accepted', 'accepted', 'rouge', 'accepted', 'budget']);
    const rows = d.corpus.rows() as unknown as (MessagesRow & { source: string })[];
    assert.deepEqual(rows.map((r) => r.messages[0].content), [
      'Describe how the tar command creates an archive and how gzip compresses it.', 'List three uses of the grep command.', 'Name the signal that Ctrl-C sends to a process.', 'Tell me which command shows free disk space.',
    ]);
    assert.deepEqual(rows[2].messages[1], { role: 'assistant', content: 'SIGINT.' });
    assert.equal(rows[0].source, 'distilled:script');
    assert.deepEqual(d.corpus.columns, ['messages', 'source']);
  });

  it('names bad input', async () => {
    await assert.rejects(distill(scripted([], () => ''), []), /distill: no seed tasks/);
    await assert.rejects(distill(scripted([], () => ''), [{ instruction: 'x y z w' }], { numInstruction: 3 } as never), /distill: unknown option "numInstruction"; did you mean "numInstructions"\?/);
    await assert.rejects(distill(scripted(['\n\n'], () => ''), [{ instruction: 'x y z w' }], { maxRequests: 1 }), /answers to 1 requests held no instruction/);
    assert.throws(() => endpointTeacher('localhost:8000', { model: 'm' }), /url must start with http:\/\//);
    await assert.rejects(endpointTeacher('http://127.0.0.1:9', { model: 'm' }).complete('x', { maxTokens: 1, temperature: 0, seed: 0 }), /teacher http:\/\/127\.0\.0\.1:9\/v1\/completions: /);
  });

  it('end to end over loopback against tunelab serve; students SFT on distilled vs human data', async () => {
    const human = dataset('instructions').slice(0, 60) as unknown as MessagesRow[];
    const held = dataset('instructions', 'heldout').slice(0, 24) as unknown as MessagesRow[];
    const tok = Tokenizer.train(human.flatMap((r) => r.messages.map((m) => m.content)), { vocabSize: 400 });
    const teacherModel = CausalLM.create({ vocabSize: tok.vocabSize, nLayers: 1, dModel: 32, nHeads: 2, nKvHeads: 2, dFf: 64, contextLength: 256 }, { seed: 11 });
    const lines: string[] = [];
    const server = createServer({ model: teacherModel, tokenizer: tok, modelName: 'teacher', log: (l) => lines.push(l) });
    const url = await server.listen(0, '127.0.0.1');
    const seeds = seedTasks(human.slice(0, 8));
    const config = { numInstructions: 12, maxRequests: 16, examplesPerPrompt: 2, instructionTokens: 32, responseTokens: 24, minWords: 2, temperature: 1, seed: 3 };
    let overHttp;
    try {
      overHttp = await distill(endpointTeacher(url, { model: 'teacher' }), seeds, config);
    } finally {
      await server.close();
    }
    assert.equal(lines.length, overHttp.requests.instructions + overHttp.requests.responses);
    // The same model in-process, same seeds: the same data (sampled decoding is the server's).
    const tensors = tf.memory().numTensors;
    const local = await distill(modelTeacher(teacherModel, tok, { name: 'teacher' }), seeds, config);
    assert.equal(tf.memory().numTensors, tensors);
    assert.deepEqual(local.corpus.rows(), overHttp.corpus.rows());
    assert.deepEqual(local.corpus.report, overHttp.corpus.report);
    assert.ok(overHttp.corpus.size > 0, overHttp.corpus.formatReport());
    teacherModel.dispose();

    // Students: the same small model and budget, on the distilled rows or as many human rows.
    const distilled = overHttp.corpus.rows() as unknown as MessagesRow[];
    const humanSet = human.slice(8, 8 + distilled.length);
    const examples = tokenizeRows(held, tok, { ...tokenizeDefaults, maxLength: 129 }).examples;
    const student = async (rows: MessagesRow[]) => {
      const m = CausalLM.create({ vocabSize: tok.vocabSize, nLayers: 1, dModel: 32, nHeads: 2, nKvHeads: 2, dFf: 64, contextLength: 128 }, { seed: 2 });
      await sft(m, tok, rows, { maxSteps: 30, batchSize: 4, lr: 5e-3 });
      const { loss } = await heldOutLoss(m, { examples }, { seqLen: 128, batchSize: 8, tokens: tok });
      m.dispose();
      return loss;
    };
    const before = tf.memory().numTensors;
    const [fromTeacher, fromHumans] = [await student(distilled), await student(humanSet)];
    assert.equal(tf.memory().numTensors, before);
    // A random teacher's data teaches less about human answers than human data does.
    assert.ok(Number.isFinite(fromTeacher) && fromHumans < fromTeacher, `held-out loss: distilled ${fromTeacher}, human ${fromHumans}`);
  });
});
