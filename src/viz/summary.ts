/**
 * The short printed form of tunelab objects (a model, a tokenizer, a run): a title and a few fields, as
 * one text block for `console.log` and a small HTML table for notebooks (the kernel's mime-bundle protocol).
 */
import { escapeHtml } from './html';

/** A title plus fields, as `text/plain` (aligned `field  value` lines) and `text/html` (a two-column table). */
export function summaryBundle(title: string, fields: readonly (readonly [string, string])[]): { 'text/plain': string; 'text/html': string } {
  const width = Math.max(0, ...fields.map(([k]) => k.length));
  const text = [title, ...fields.map(([k, v]) => `  ${k.padEnd(width)}  ${v}`)].join('\n');
  const rows = fields.map(([k, v]) => `<tr><th style="text-align:left;padding:1px 8px;font-weight:normal;color:#666">${escapeHtml(k)}</th>` +
    `<td style="padding:1px 8px">${escapeHtml(v)}</td></tr>`).join('');
  const html = `<div class="tunelab-summary"><div style="font-weight:bold;margin-bottom:2px">${escapeHtml(title)}</div><table>${rows}</table></div>`;
  return { 'text/plain': text, 'text/html': html };
}
