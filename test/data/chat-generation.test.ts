/**
 * The ChatML `chat_template` tunelab exports, read the way TRL's `assistant_only_loss` reads it:
 * - TRL `trl/chat_template_utils.py` `has_generation_markers`: the template must contain
 *   `{%-? generation -?%}`; `is_chat_template_stop_token_trained`: for [user, assistant, user] the last
 *   masked non-whitespace token must be an added (special) token, or the model never learns to stop.
 * - transformers `utils/chat_template_utils.py` `AssistantTracker`: a `{% generation %}` block records
 *   (start, end) = (length rendered before it, + length of its output); `apply_chat_template(...,
 *   return_assistant_tokens_mask=True)` then sets mask 1 on tokens char_to_token(start) …
 *   char_to_token(end − 1). A template without blocks gives an all-zero mask.
 */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Template } from '@huggingface/jinja';
import { Tokenizer } from '../../src/tokenizer';
import { CausalLM } from '../../src/model';
import { loadModel, saveModel } from '../../src/io/checkpoint';
import { chatmlJinja, chatmlTemplate, jinjaTemplate, type ChatMessage } from '../../src/data/chat';
import { encodeChat } from '../../src/data/tokenize';
import { engineReady } from '../helpers';

const tok = Tokenizer.train(['The whale swam in the sea. Hello there, how are you? I am fine, thanks. The sky is blue.'], { vocabSize: 300 });
const convo: ChatMessage[] = [
  { role: 'system', content: 'You are kind.' },
  { role: 'user', content: 'Hello there, how are you?' },
  { role: 'assistant', content: 'I am fine, thanks.' },
  { role: 'user', content: 'What is the sky?' },
  { role: 'assistant', content: 'The sky is blue.' },
];

/** TRL's `has_generation_markers`. */
const hasGenerationMarkers = (t: string) => /\{%-?\s*generation\s*-?%\}/.test(t);

/** transformers' rendering with AssistantTracker: the text and the (start, end) of each generation block. */
function renderTracked(source: string, messages: ChatMessage[]): { text: string; spans: [number, number][] } {
  const [open, close] = ['\u0002', '\u0003'];
  const src = source.replace(/\{%(-?)\s*(end)?generation\s*(-?)%\}/g, (_, l: string, end: string | undefined, r: string) => `{{${l} '${end ? close : open}' ${r}}}`);
  const out = new Template(src).render({ messages, add_generation_prompt: false, bos_token: '', eos_token: '' });
  let text = '';
  const spans: [number, number][] = [];
  for (const ch of out) {
    if (ch === open) spans.push([text.length, -1]);
    else if (ch === close) spans[spans.length - 1][1] = text.length;
    else text += ch;
  }
  return { text, spans };
}

/** `apply_chat_template(..., tokenize=True, return_assistant_tokens_mask=True)` with tunelab's tokenizer. */
function assistantMasks(source: string, messages: ChatMessage[]): { ids: number[]; mask: number[] } {
  const { text, spans } = renderTracked(source, messages);
  const ids = tok.encode(text);
  // char → token through each token's text (ASCII content, so each token decodes to its own characters).
  const starts: number[] = [];
  let pos = 0;
  for (const id of ids) { starts.push(pos); pos += tok.decode([id]).length; }
  assert.equal(pos, text.length, 'token texts cover the rendered text');
  const charToToken = (c: number) => starts.filter((s) => s <= c).length - 1;
  const mask = ids.map(() => 0);
  for (const [s, e] of spans) for (let t = charToToken(s); t <= charToToken(e - 1); t++) mask[t] = 1;
  return { ids, mask };
}

describe('data: the exported chat_template works with TRL assistant_only_loss', () => {
  let source: string;
  let dir: string;
  before(async () => {
    await engineReady();
    dir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'tunelab-chatgen-')), 'm');
    const m = CausalLM.create({ family: 'llama', vocabSize: tok.vocabSize, contextLength: 16, dModel: 16, nLayers: 1, nHeads: 2, nKvHeads: 1, dFf: 32 }, { seed: 1 });
    await saveModel(dir, m, tok);
    m.dispose();
    source = (JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8')) as { chat_template: string }).chat_template;
  });

  it('has generation markers, and transformers\' assistant mask equals tunelab\'s assistant-only mask token for token', () => {
    assert.ok(hasGenerationMarkers(source));
    const hf = assistantMasks(source, convo);
    const own = encodeChat(tok, chatmlTemplate.render(convo));
    assert.deepEqual(hf.ids, own.ids);
    assert.deepEqual(hf.mask, own.assistantMask);
    assert.deepEqual(hf.mask.filter((x) => x === 1).length > 0, true);
    // The masked tokens are the assistant replies and their <|im_end|>, nothing else.
    const masked = hf.ids.filter((_, i) => hf.mask[i] === 1);
    assert.equal(tok.decode(masked), 'I am fine, thanks.<|im_end|>The sky is blue.<|im_end|>');
  });

  it('TRL\'s stop-token check passes: the last masked token of an assistant turn is <|im_end|>', () => {
    const { ids, mask } = assistantMasks(source, [{ role: 'user', content: 'dummy' }, { role: 'assistant', content: 'dummy' }, { role: 'user', content: 'dummy' }]);
    const masked = ids.filter((_, i) => mask[i] === 1).filter((id) => tok.decode([id]).trim() !== '');
    assert.equal(masked[masked.length - 1], tok.specialTokens.imEnd!.id);
  });

  it('the old template (no markers) would mask every token out, which is why the markers are there', () => {
    const old = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}";
    assert.ok(!hasGenerationMarkers(old));
    assert.deepEqual(new Set(assistantMasks(old, convo).mask), new Set([0]));
  });

  it('tunelab\'s renderer reads the markers: same text as before, spans from the blocks, also after loading the folder', async () => {
    const t = jinjaTemplate(source);
    for (const addGenerationPrompt of [false, true]) {
      const a = chatmlTemplate.render(convo, { addGenerationPrompt });
      const b = t.render(convo, { addGenerationPrompt });
      assert.equal(b.text, a.text);
      assert.deepEqual(b.assistantSpans, a.assistantSpans);
    }
    const loaded = await loadModel(dir);
    assert.deepEqual(loaded.chatTemplate!.render(convo).assistantSpans, chatmlTemplate.render(convo).assistantSpans);
    loaded.model.dispose();
    // Without markers (what GGUF carries) the text is the same.
    assert.equal(jinjaTemplate(chatmlJinja({}, false)).render(convo).text, chatmlTemplate.render(convo).text);
    // Whitespace control on the tags trims as Jinja does, and spans still come from the blocks.
    const dashed = "{% for m in messages %}{{ m.role }}:\n{%- if m.role == 'assistant' %} {%- generation -%}  {{ m.content }}!{%- endgeneration %}{% else %} {{ m.content }}{% endif %}\n{% endfor %}";
    const r = jinjaTemplate(dashed, { endOfTurn: '!' }).render(convo.slice(1, 3));
    // @huggingface/jinja drops generation tags with their whitespace control; the text must not change.
    assert.equal(r.text, new Template(dashed).render({ messages: convo.slice(1, 3), add_generation_prompt: false, bos_token: '', eos_token: '' }));
    assert.deepEqual(r.assistantSpans.map((s) => r.text.slice(s.start, s.end)), ['I am fine, thanks.!']);
    // One block per assistant message is needed to know which message a span belongs to.
    const twice = "{% for m in messages %}{% if m.role == 'assistant' %}{% generation %}{{ m.content }}{% endgeneration %}{% generation %}.{% endgeneration %}{% else %}{{ m.content }}{% endif %}{% endfor %}";
    assert.throws(() => jinjaTemplate(twice, { name: 'two-blocks' }).render(convo), /two-blocks: renders 4 \{% generation %\} blocks for 2 assistant messages/);
  });

  it('content holding the private-use marks the renderer uses falls back to incremental rendering, same spans', () => {
    const odd: ChatMessage[] = [{ role: 'user', content: 'a\uE000b' }, { role: 'assistant', content: 'c\uE001d' }];
    const got = jinjaTemplate(chatmlJinja()).render(odd);
    const want = chatmlTemplate.render(odd);
    assert.equal(got.text, want.text);
    assert.deepEqual(got.assistantSpans, want.assistantSpans);
  });
});
