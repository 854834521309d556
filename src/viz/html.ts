/** Escaping helpers shared by the chart, table and progress outputs. */
import { randomBytes } from 'crypto';

/**
 * Escapes text for HTML element content and quoted attribute values.
 *
 * @example
 * escapeHtml('<b>&"') // '&lt;b&gt;&amp;&quot;'
 */
export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

/**
 * JSON that is safe inside an inline `<script>`: `<`, `>` and `&` become `\u003c`… so data such as a
 * token `</script>` cannot end the script, and U+2028/9 (legal in JSON, not in older JS) are escaped.
 * The result never contains a raw newline, so a chart's spec sits on one line of its script.
 */
export function jsonForScript(value: unknown): string {
  return JSON.stringify(value)
    .replace(/</g, '\\u003c')
    .replace(/>/g, '\\u003e')
    .replace(/&/g, '\\u0026')
    .replace(/\u2028/g, '\\u2028')
    .replace(/\u2029/g, '\\u2029');
}

/**
 * Escapes data-derived text (tokens, labels) for Plotly, whose text fields read a subset of HTML
 * (`<b>`, `<br>`, entities): a token `<br>` must show as itself, not break the line.
 */
export function plotlyText(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** Plotly's pseudo-HTML as plain text: tags dropped, the entities {@link plotlyText} writes decoded. */
export function plotlyPlain(s: string): string {
  return s.replace(/<[^>]*>/g, '').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');
}

/**
 * A token made visible as an axis label: leading/trailing spaces as `␣`, newlines as `↵`, tabs as `⇥`,
 * then escaped for Plotly.
 */
export function tokenLabel(token: string): string {
  const visible = token
    .replace(/\n/g, '↵')
    .replace(/\t/g, '⇥')
    .replace(/^ +| +$/g, (m) => '␣'.repeat(m.length));
  return plotlyText(visible === '' ? '∅' : visible);
}

/** A DOM id unlikely to collide with ids of earlier outputs kept in a saved notebook (hence random, not a counter). */
export function randomId(prefix = 'tl'): string {
  return `${prefix}-${randomBytes(6).toString('hex')}`;
}

/** Plain numbers for JSON: typed arrays would serialise as objects, and NaN/±Infinity become gaps (null). */
export function nums(a: ArrayLike<number>): (number | null)[] {
  return Array.from(a, (v) => (Number.isFinite(v) ? v : null));
}
