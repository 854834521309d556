/**
 * Streaming text for the server: a text assembler that turns tokens (from `generate()`'s `TokenStepper`)
 * into text deltas that never split a UTF-8 character and never leak a stop string.
 */
import type { GenerateOptions } from '../model/generate';
import type { Tokenizer } from '../tokenizer/tokenizer';

/** Sampling settings of one request (a subset of {@link GenerateOptions}). */
export type StepOptions = Pick<GenerateOptions, 'doSample' | 'temperature' | 'topK' | 'topP' | 'seed'>;

/** What {@link TextAssembler.push} reports. */
export interface TextDelta {
  /** New text that is final (may be ''). */
  delta: string;
  /** A stop string was reached: the text ends before it and generation should stop. */
  stopped: boolean;
}

/**
 * Builds the completion text from generated ids. The whole id list is decoded after each token (cheap at
 * these context lengths, and exact for any decoder: slicing ids would break decoders that strip a leading
 * space). Text is released only when stable: trailing U+FFFD (a character whose bytes have not all
 * arrived) and any tail that could begin a stop string are held back until resolved or {@link finish}.
 * So the deltas concatenate to exactly {@link text}.
 *
 * @example
 * const t = new TextAssembler(tok, ['\n\n']);
 * for (const id of ids) { const { delta, stopped } = t.push(id); send(delta); if (stopped) break; }
 * send(t.finish());
 */
export class TextAssembler {
  private readonly ids: number[] = [];
  private emitted = '';
  private final: string | undefined;

  constructor(private readonly tokenizer: Tokenizer, private readonly stops: readonly string[] = []) {}

  /** Adds one generated id (pass only content ids: stop tokens are not text). */
  push(id: number): TextDelta {
    if (this.final !== undefined) return { delta: '', stopped: true };
    this.ids.push(id);
    const full = this.decoded();
    const cut = this.firstStop(full);
    if (cut >= 0) {
      this.final = full.slice(0, cut);
      return { delta: this.release(this.final), stopped: true };
    }
    let stable = full.replace(/\uFFFD+$/, '');
    stable = stable.slice(0, stable.length - this.partialStop(stable));
    return { delta: this.release(stable), stopped: false };
  }

  /** Ends the text (no more ids) and returns what was held back. */
  finish(): string {
    if (this.final === undefined) this.final = this.decoded();
    return this.release(this.final);
  }

  /** The text so far: final after a stop string or {@link finish}. */
  get text(): string {
    return this.final ?? this.decoded();
  }

  private decoded(): string {
    return this.tokenizer.decode(this.ids, { skipSpecialTokens: true });
  }

  /** Returns the part of `upTo` not yet emitted; nothing if it does not extend what was emitted. */
  private release(upTo: string): string {
    // Byte-level decoding only ever completes trailing characters, so this holds; the guard keeps a
    // stranger decoder from making the stream disagree with the final text.
    if (upTo.length <= this.emitted.length || !upTo.startsWith(this.emitted)) return '';
    const delta = upTo.slice(this.emitted.length);
    this.emitted = upTo;
    return delta;
  }

  private firstStop(text: string): number {
    let first = -1;
    for (const s of this.stops) {
      const i = text.indexOf(s);
      if (i >= 0 && (first < 0 || i < first)) first = i;
    }
    return first;
  }

  /** Length of the longest tail of `text` that is a proper prefix of some stop string. */
  private partialStop(text: string): number {
    let best = 0;
    for (const s of this.stops) {
      for (let n = Math.min(s.length - 1, text.length); n > best; n--) {
        if (text.endsWith(s.slice(0, n))) { best = n; break; }
      }
    }
    return best;
  }
}
