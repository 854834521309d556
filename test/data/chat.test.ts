import { strict as assert } from 'assert';
import { Tokenizer } from '../../src/tokenizer';
import {
  chatml, chatmlTemplate, chatTemplateFromConfig, jinjaTemplate, loadJinja, validateMessages, type ChatMessage,
} from '../../src/data/chat';
import {
  encodeChat, rowFormat, tokenizeDefaults, tokenizePreferenceRow, tokenizePreferenceRows, tokenizeRow, tokenizeRows,
  type TokenizedExample, type TokenizeConfig,
} from '../../src/data/tokenize';

const corpus = [
  'The whale swam in the sea. Hello there, how are you? I am fine, thanks. What is the sky? The sky is blue.',
  'Call me Ishmael. Some years ago, never mind how long precisely, I thought I would sail about a little.',
];
const tok = Tokenizer.train(corpus, { vocabSize: 300 });
const special = (role: 'eos' | 'imEnd' | 'imStart' | 'bos') => tok.specialTokens[role]!.id;

// HF's ChatML template (as in Qwen/ChatML tokenizer_config.json files).
const chatmlJinja =
  "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
// A Zephyr-style template whose assistant turns end with eos_token instead of a ChatML delimiter.
const zephyrJinja =
  "{{ bos_token }}{% for m in messages %}{{ '<|' + m.role + '|>\\n' + m.content }}{% if m.role == 'assistant' %}{{ eos_token }}{% endif %}{{ '\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}";

const convo: ChatMessage[] = [
  { role: 'system', content: 'You are kind.' },
  { role: 'user', content: 'Hello there, how are you?' },
  { role: 'assistant', content: 'I am fine, thanks.' },
  { role: 'user', content: 'What is the sky?' },
  { role: 'assistant', content: 'The sky is blue.' },
];

/** Decodes each maximal run of mask-1 tokens separately. */
function maskedRuns(ids: number[], mask: number[]): string[] {
  const runs: string[] = [];
  let cur: number[] = [];
  ids.forEach((id, i) => {
    if (mask[i] === 1) cur.push(id);
    else if (cur.length) (runs.push(tok.decode(cur)), (cur = []));
  });
  if (cur.length) runs.push(tok.decode(cur));
  return runs;
}

const cfg = (over: Partial<TokenizeConfig> = {}): TokenizeConfig => ({ ...tokenizeDefaults, ...over });
const row = (r: Parameters<typeof tokenizeRow>[0], c: TokenizeConfig = cfg()): TokenizedExample => {
  const ex = tokenizeRow(r, tok, c);
  assert.ok(ex, 'not dropped');
  return ex;
};

describe('data/chat: templates', () => {
  it('ChatML renders turns, the generation prompt, and assistant spans of content + <|im_end|>', () => {
    const chat = chatmlTemplate.render(convo.slice(1, 3));
    assert.equal(chat.text, '<|im_start|>user\nHello there, how are you?<|im_end|>\n<|im_start|>assistant\nI am fine, thanks.<|im_end|>\n');
    assert.deepEqual(chat.assistantSpans.map((s) => [chat.text.slice(s.start, s.end), s.message]), [['I am fine, thanks.<|im_end|>', 1]]);
    assert.equal(chat.segments.map((s) => s.text).join(''), chat.text);
    const gen = chatmlTemplate.render(convo.slice(1, 2), { addGenerationPrompt: true });
    assert.ok(gen.text.endsWith('<|im_end|>\n<|im_start|>assistant\n'));
    assert.deepEqual(gen.assistantSpans, []);
    const other = chatml({ imStart: '[S]', imEnd: '[E]' }).render([{ role: 'assistant', content: 'x' }]);
    assert.equal(other.text, '[S]assistant\nx[E]\n');
  });

  it('validates messages, naming the index', () => {
    assert.throws(() => validateMessages([{ role: 'user', content: 'a' }, { role: 'bot', content: 'b' }]), /messages\[1\]\.role/);
    assert.throws(() => validateMessages([{ role: 'user', content: 3 }]), /messages\[0\]\.content must be a string/);
    assert.throws(() => validateMessages('hi'), /expected an array/);
    const call = validateMessages([{ role: 'assistant', content: null, tool_calls: [{ name: 'f' }] }]);
    assert.equal(call[0].content, '');
    assert.throws(() => chatmlTemplate.render(call), /tool_calls/);
  });

  it('a ChatML Jinja template renders exactly as the built-in ChatML, spans and tokens included', () => {
    const jinja = jinjaTemplate(chatmlJinja);
    assert.equal(jinja.endOfTurn, '<|im_end|>');
    for (const addGenerationPrompt of [false, true]) {
      const a = chatmlTemplate.render(convo, { addGenerationPrompt });
      const b = jinja.render(convo, { addGenerationPrompt });
      assert.equal(b.text, a.text);
      assert.deepEqual(b.assistantSpans, a.assistantSpans);
      assert.deepEqual(encodeChat(tok, b), encodeChat(tok, a));
    }
    const c = cfg({ assistantOnlyLoss: true });
    assert.deepEqual(row({ messages: convo }, { ...c, template: jinja }), row({ messages: convo }, c));
  });

  it('a Jinja template ending turns with eos_token masks content + eos', () => {
    const t = jinjaTemplate(zephyrJinja, { bosToken: '<|startoftext|>', eosToken: '<|endoftext|>' });
    assert.equal(t.endOfTurn, '<|endoftext|>');
    const ex = row({ messages: convo }, cfg({ assistantOnlyLoss: true, template: t }));
    assert.equal(ex.ids[0], special('bos'));
    assert.deepEqual(maskedRuns(ex.ids, ex.lossMask), ['I am fine, thanks.<|endoftext|>', 'The sky is blue.<|endoftext|>']);
    assert.equal(tok.decode(ex.ids), t.render(convo).text);
  });

  it('rejects templates that are not prefix-stable, and reports missing or broken templates', () => {
    // Marks the last message, so earlier renderings are not prefixes of the whole conversation.
    const unstable = jinjaTemplate("{% for m in messages %}{% if loop.last %}LAST {% endif %}{{ m.role + ': ' + m.content + '\\n' }}{% endfor %}");
    assert.throws(() => unstable.render(convo), /not prefix-stable at message 2/);
    assert.throws(() => chatTemplateFromConfig({}, 'x/tokenizer_config.json'), /x\/tokenizer_config\.json: no chat_template/);
    assert.throws(() => jinjaTemplate('{% for %}', { name: 'bad' }), /bad: cannot parse/);
  });

  it('reads chat_template, bos and eos (AddedToken objects too) from tokenizer_config.json', () => {
    const t = chatTemplateFromConfig({
      chat_template: [{ name: 'tool_use', template: 'TOOLS' }, { name: 'default', template: zephyrJinja }],
      bos_token: { content: '<|startoftext|>' },
      eos_token: '<|endoftext|>',
    });
    assert.equal(t.render([{ role: 'assistant', content: 'x' }]).text, '<|startoftext|><|assistant|>\nx<|endoftext|>\n');
    assert.throws(() => chatTemplateFromConfig({ chat_template: [{ name: 'tool_use', template: 'T' }] }), /named "default" \(have: tool_use\)/);
  });

  it('names @huggingface/jinja when it is missing, and passes other errors through', () => {
    const missing = () => { throw Object.assign(new Error("Cannot find module '@huggingface/jinja'"), { code: 'MODULE_NOT_FOUND' }); };
    assert.throws(() => loadJinja(missing), /optional package @huggingface\/jinja/);
    assert.throws(() => loadJinja(() => { throw new SyntaxError('boom'); }), /^SyntaxError: boom$/);
    assert.throws(() => loadJinja(() => ({})), /no Template class/);
    assert.equal(typeof loadJinja().Template, 'function');
  });
});

describe('data/tokenize: masks token by token', () => {
  it('messages: assistant-only masks exactly each assistant text + <|im_end|>', () => {
    const ex = row({ messages: convo }, cfg({ assistantOnlyLoss: true }));
    // Segment-wise encoding gives the same ids as encoding the whole rendered text here.
    assert.deepEqual(ex.ids, tok.encode(chatmlTemplate.render(convo).text));
    assert.deepEqual(maskedRuns(ex.ids, ex.lossMask), ['I am fine, thanks.<|im_end|>', 'The sky is blue.<|im_end|>']);
    // The exact array: zeros up to the first answer, its tokens and <|im_end|> as ones, then zeros again.
    const start = tok.encode('<|im_start|>system\nYou are kind.<|im_end|>\n<|im_start|>user\nHello there, how are you?<|im_end|>\n<|im_start|>assistant\n').length;
    const answer = tok.encode('I am fine, thanks.').length + 1;
    assert.deepEqual(ex.lossMask.slice(0, start + answer + 2), [...Array(start).fill(0), ...Array(answer).fill(1), 0, 0]);
    assert.equal(ex.ids[start + answer - 1], special('imEnd'));
    assert.equal(ex.lossMask.reduce((a, b) => a + b, 0), answer + tok.encode('The sky is blue.').length + 1);
    assert.equal(ex.promptLength, 0);
    const all = row({ messages: convo });
    assert.deepEqual(all.ids, ex.ids);
    assert.ok(all.lossMask.every((m) => m === 1), 'TRL default: the whole conversation counts');
  });

  it('message content cannot forge turn delimiters with ChatML', () => {
    const ex = row({ messages: [{ role: 'user', content: 'a<|im_end|>b' }, { role: 'assistant', content: 'ok' }] }, cfg({ assistantOnlyLoss: true }));
    assert.equal(ex.ids.filter((id) => id === special('imEnd')).length, 2, 'one <|im_end|> per turn, none from content');
    assert.deepEqual(maskedRuns(ex.ids, ex.lossMask), ['ok<|im_end|>']);
  });

  it('prompt-completion: completion + EOS only by default, everything with completionOnlyLoss false', () => {
    const ex = row({ prompt: 'What is the sky?', completion: ' The sky is blue.' });
    const p = tok.encode('What is the sky?');
    assert.deepEqual(ex.ids, [...p, ...tok.encode(' The sky is blue.'), special('eos')]);
    assert.deepEqual(ex.lossMask, [...p.map(() => 0), ...ex.ids.slice(p.length).map(() => 1)]);
    assert.equal(ex.promptLength, p.length);
    assert.deepEqual(maskedRuns(ex.ids, ex.lossMask), [' The sky is blue.<|endoftext|>']);
    assert.ok(row({ prompt: 'Q', completion: 'A' }, cfg({ completionOnlyLoss: false })).lossMask.every((m) => m === 1));
    const once = row({ prompt: 'Q', completion: 'A<|endoftext|>' });
    assert.equal(once.ids.filter((id) => id === special('eos')).length, 1, 'EOS not doubled');
    assert.equal(row({ prompt: 'Q', completion: 'A' }, cfg({ addBos: true })).ids[0], special('bos'));
  });

  it('conversational prompt-completion: TRL counts everything after the prompt; assistant-only trims the newline', () => {
    const r = { prompt: convo.slice(0, 2), completion: convo.slice(2, 3) };
    const ex = row(r);
    const head = encodeChat(tok, chatmlTemplate.render(convo.slice(0, 2), { addGenerationPrompt: true })).ids;
    assert.deepEqual(ex.ids.slice(0, head.length), head);
    assert.equal(ex.promptLength, head.length);
    assert.deepEqual(maskedRuns(ex.ids, ex.lossMask), ['I am fine, thanks.<|im_end|>\n']);
    assert.deepEqual(maskedRuns(ex.ids, row(r, cfg({ assistantOnlyLoss: true })).lossMask), ['I am fine, thanks.<|im_end|>']);
    // Completion-only off, assistant-only on: the prompt's earlier assistant turn counts too, user turns never.
    const twoTurns = { prompt: convo.slice(0, 4), completion: convo.slice(4) };
    assert.deepEqual(maskedRuns(ex.ids, row(r, cfg({ completionOnlyLoss: false })).lossMask), [tok.decode(ex.ids)]);
    const both = row(twoTurns, cfg({ completionOnlyLoss: false, assistantOnlyLoss: true }));
    assert.deepEqual(maskedRuns(both.ids, both.lossMask), ['I am fine, thanks.<|im_end|>', 'The sky is blue.<|im_end|>']);
    assert.throws(() => tokenizeRow({ prompt: 'x', completion: convo.slice(2, 3) }, tok), /both be strings or both be message lists/);
  });

  it('text: every token counts and EOS ends it', () => {
    const ex = row({ text: 'Call me Ishmael.' });
    assert.deepEqual(ex.ids, [...tok.encode('Call me Ishmael.'), special('eos')]);
    assert.ok(ex.lossMask.every((m) => m === 1));
  });

  it('truncates to maxLength keeping the start, drops on request, and reports', () => {
    const long = { text: corpus[1] };
    const full = row(long, cfg({ maxLength: null }));
    const cut = row(long, cfg({ maxLength: 10 }));
    assert.deepEqual(cut.ids, full.ids.slice(0, 10));
    assert.equal(cut.fullLength, full.ids.length);
    const rows = [long, { text: 'Hi' }, { prompt: corpus[0], completion: ' fine' }];
    const { examples, report } = tokenizeRows(rows, tok, cfg({ maxLength: 10 }));
    assert.deepEqual(report, { rows: 3, kept: 3, truncated: 2, dropped: 0, noLoss: 1 });
    assert.ok(examples.every((e) => e.ids.length <= 10));
    assert.equal(examples[2].promptLength, 10, 'a prompt longer than maxLength leaves no completion');
    const dropped = tokenizeRows(rows, tok, cfg({ maxLength: 10, truncation: 'drop' }));
    assert.deepEqual(dropped.report, { rows: 3, kept: 1, truncated: 0, dropped: 2, noLoss: 0 });
    assert.deepEqual(dropped.examples[0].ids, row({ text: 'Hi' }).ids);
    assert.throws(() => tokenizeRow(long, tok, cfg({ maxLength: 0 })), /maxLength must be a positive integer/);
  });

  it('preference: chosen and rejected share the prompt ids; only completions count', () => {
    const pair = tokenizePreferenceRow({ prompt: 'What is the sky?', chosen: ' The sky is blue.', rejected: ' The sea.' }, tok)!;
    const n = tok.encode('What is the sky?').length;
    assert.equal(pair.chosen.promptLength, n);
    assert.equal(pair.rejected.promptLength, n);
    assert.deepEqual(pair.chosen.ids.slice(0, n), pair.rejected.ids.slice(0, n));
    assert.deepEqual(maskedRuns(pair.chosen.ids, pair.chosen.lossMask), [' The sky is blue.<|endoftext|>']);
    assert.deepEqual(maskedRuns(pair.rejected.ids, pair.rejected.lossMask), [' The sea.<|endoftext|>']);
    // Completion-only even when SFT's completionOnlyLoss is off: DPO sums log-probs over completions.
    const off = tokenizePreferenceRow({ prompt: 'Q', chosen: ' a', rejected: ' b' }, tok, cfg({ completionOnlyLoss: false }))!;
    assert.equal(off.chosen.lossMask[0], 0);
  });

  it('preference: conversational rows and implicit prompts', () => {
    const prompt = convo.slice(0, 2);
    const chosen: ChatMessage[] = [{ role: 'assistant', content: 'I am fine, thanks.' }];
    const rejected: ChatMessage[] = [{ role: 'assistant', content: 'Go away.' }];
    const pair = tokenizePreferenceRow({ prompt, chosen, rejected }, tok, cfg({ assistantOnlyLoss: true }))!;
    const head = encodeChat(tok, chatmlTemplate.render(prompt, { addGenerationPrompt: true })).ids;
    assert.deepEqual(pair.chosen.ids.slice(0, head.length), head);
    assert.deepEqual(pair.rejected.ids.slice(0, head.length), head);
    assert.deepEqual(maskedRuns(pair.rejected.ids, pair.rejected.lossMask), ['Go away.<|im_end|>']);
    const implicit = tokenizePreferenceRow({ chosen: [...prompt, ...chosen], rejected: [...prompt, ...rejected] }, tok, cfg({ assistantOnlyLoss: true }))!;
    assert.deepEqual(implicit, pair);
    // Strings: the shared text up to the space before the first difference.
    const s = tokenizePreferenceRow({ chosen: 'The sky is blue.', rejected: 'The sky is green.' }, tok)!;
    assert.equal(tok.decode(s.chosen.ids.slice(0, s.chosen.promptLength)), 'The sky is');
    assert.deepEqual(maskedRuns(s.rejected.ids, s.rejected.lossMask), [' green.<|endoftext|>']);
    const { pairs, report } = tokenizePreferenceRows([{ prompt: 'Q', chosen: ' a', rejected: corpus[1] }], tok, cfg({ maxLength: 8 }));
    assert.equal(pairs.length, 1);
    assert.deepEqual(report, { rows: 1, kept: 1, truncated: 1, dropped: 0, noLoss: 0 });
  });

  it('detects formats and names the row in errors', () => {
    assert.equal(rowFormat({ text: 'x' }), 'text');
    assert.equal(rowFormat({ messages: [] }), 'messages');
    assert.equal(rowFormat({ prompt: 'a', completion: 'b' }), 'prompt-completion');
    assert.equal(rowFormat({ prompt: 'a', chosen: 'b', rejected: 'c' }), 'preference');
    assert.throws(() => rowFormat({ question: 'x' }), /keys: question/);
    assert.throws(() => tokenizeRows([{ text: 'ok' }, { messages: [{ role: 'robot', content: 'x' }] } as never], tok), /rows\[1\]\.messages\[0\]\.role/);
    const fromFile = { messages: [{ role: 'user', content: 5 }], __file: 'chat.jsonl', __row: 7 } as unknown as { messages: ChatMessage[] };
    assert.throws(() => tokenizeRows([fromFile], tok), /chat\.jsonl: row 7\.messages\[0\]\.content/);
    assert.throws(() => tokenizeRow({ prompt: 'a', chosen: 'b', rejected: 'c' } as never, tok), /tokenizePreferenceRow/);
  });

  it('refuses ChatML with a tokenizer that has no <|im_end|> token', () => {
    const plain = Tokenizer.train(corpus, { vocabSize: 280, imStartToken: null, imEndToken: null });
    assert.throws(() => tokenizeRow({ messages: convo }, plain), /end-of-turn "<\|im_end\|>" is not a single token/);
  });
});
