/** arquero tables as HTML in notebooks (and markdown-style text in scripts). */
import type { ColumnTable } from 'arquero';
import { DisplaySink, MimeBundle, displaySink } from './display';
import { escapeHtml } from './html';

/** Options of {@link showTable} and {@link tableHtml}. */
export interface TableOptions {
  /** Rows to show (default 20). */
  limit?: number;
  /** Rows to skip first (default 0). */
  offset?: number;
  /** Columns to show, in order (default all). */
  columns?: readonly string[];
  /** Longer strings are cut with `…` (default 200). */
  maxChars?: number;
  /** Where to show it (default: the auto-detected sink). */
  sink?: DisplaySink;
}

type FormatFn = (value: unknown) => string;

/** A format that cuts long strings, for columns whose shown values are all strings (others keep arquero's number/date inference). */
function truncating(table: ColumnTable, names: readonly string[], offset: number, limit: number, maxChars: number): Record<string, FormatFn> {
  const out: Record<string, FormatFn> = {};
  const rows = table.slice(offset, offset + limit).objects() as Record<string, unknown>[];
  for (const name of names) {
    if (rows.length > 0 && rows.every((r) => r[name] == null || typeof r[name] === 'string')) {
      out[name] = (v) => (typeof v === 'string' && v.length > maxChars ? `${v.slice(0, maxChars)}…` : String(v));
    }
  }
  return out;
}

/**
 * An arquero table as an HTML table with a caption (`rows 1–20 of 1,234`). Cells are escaped by arquero;
 * column names, which arquero writes raw, are escaped here.
 *
 * @example
 * tableHtml(aq.table({ prompt: ['<b>hi</b>'], score: [0.5] }))   // '<div …><table>…&lt;b&gt;hi&lt;/b&gt;…'
 */
export function tableHtml(table: ColumnTable, opts: TableOptions = {}): string {
  const limit = opts.limit ?? 20;
  const offset = opts.offset ?? 0;
  const names = opts.columns ? [...opts.columns] : table.columnNames();
  const format = truncating(table, names, offset, limit, opts.maxChars ?? 200);
  // Rename to escaped names (escaping is one-to-one, so names cannot collide) and key formats likewise.
  const escaped = names.map(escapeHtml);
  const renamed = table.select(names).rename(Object.fromEntries(names.map((n, i) => [n, escaped[i]])));
  const html = renamed.toHTML({
    limit, offset,
    format: Object.fromEntries(Object.entries(format).map(([n, f]) => [escapeHtml(n), f])),
    style: { th: 'padding:2px 8px', td: 'padding:2px 8px;vertical-align:top;white-space:pre-wrap' },
  });
  return `<div class="tunelab-table" style="max-height:480px;overflow:auto">` +
    `<div style="font:12px sans-serif;color:#666;margin-bottom:4px">${escapeHtml(caption(table, offset, limit, names.length))}</div>${html}</div>`;
}

function caption(table: ColumnTable, offset: number, limit: number, columns: number): string {
  const n = table.numRows();
  const shown = Math.max(0, Math.min(limit, n - offset));
  const range = shown === 0 ? 'no rows' : `rows ${offset + 1}–${offset + shown}`;
  return `${range} of ${n.toLocaleString('en-US')} × ${columns} column${columns === 1 ? '' : 's'}`;
}

/** The outputs a notebook receives for a table: HTML plus a markdown-style text version. */
export function tableMimeBundle(table: ColumnTable, opts: TableOptions = {}): MimeBundle {
  const limit = opts.limit ?? 20;
  const offset = opts.offset ?? 0;
  const names = opts.columns ? [...opts.columns] : table.columnNames();
  const text = `${table.select(names).toMarkdown({ limit, offset })}${caption(table, offset, limit, names.length)}`;
  return { 'text/html': tableHtml(table, opts), 'text/plain': text };
}

/**
 * Shows an arquero table: an HTML table in notebooks, markdown-style text in scripts.
 *
 * @example
 * showTable(corpus.table, { limit: 10 });
 */
export function showTable(table: ColumnTable, opts: TableOptions = {}): void {
  (opts.sink ?? displaySink()).show(tableMimeBundle(table, opts));
}
