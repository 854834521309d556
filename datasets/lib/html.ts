/**
 * A small, forgiving HTML-to-text converter for the generated DocBook HTML of the Advanced
 * Bash-Scripting Guide and the Debian FAQ (no DOM, no dependencies).
 *
 * - `<head>`, `<script>`, `<style>` and elements whose class is in `skipClasses` (navigation
 *   headers/footers, tables of contents) are dropped with their content;
 * - block elements become paragraph breaks, `<br>` a line break, `<li>` items get "- ";
 * - `<pre>` keeps its lines and indentation; `stripLineNumbers` removes the "   1 " numbering
 *   of the ABS guide's program listings;
 * - entities (named, decimal, hex) are decoded; other whitespace is collapsed;
 * - with `markHeadings`, headings come out as "#"×level + " " + text paragraphs.
 */

const NAMED: Record<string, string> = {
  amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", nbsp: '\u00a0', copy: '©', reg: '®', trade: '™',
  mdash: '—', ndash: '–', hellip: '…', lsquo: '‘', rsquo: '’', ldquo: '“', rdquo: '”', laquo: '«',
  raquo: '»', middot: '·', bull: '•', deg: '°', times: '×', divide: '÷', plusmn: '±', sect: '§',
  para: '¶', shy: '\u00ad', eacute: 'é', egrave: 'è', agrave: 'à', aacute: 'á', ouml: 'ö', uuml: 'ü',
  auml: 'ä', szlig: 'ß', ccedil: 'ç', ntilde: 'ñ', oacute: 'ó', iacute: 'í', uacute: 'ú', larr: '←',
  rarr: '→', uarr: '↑', darr: '↓', le: '≤', ge: '≥', ne: '≠', micro: 'µ', frac12: '½', frac14: '¼',
  frac34: '¾', cent: '¢', pound: '£', euro: '€', yen: '¥', iexcl: '¡', iquest: '¿', acute: '´',
  cedil: '¸', uml: '¨', macr: '¯', ordf: 'ª', ordm: 'º', sup1: '¹', sup2: '²', sup3: '³', not: '¬',
  brvbar: '¦', curren: '¤', thinsp: '\u2009', ensp: '\u2002', emsp: '\u2003', zwnj: '\u200c', zwj: '\u200d',
};

export function decodeEntities(s: string): string {
  return s.replace(/&(#x[0-9a-fA-F]+|#[0-9]+|[a-zA-Z][a-zA-Z0-9]*);?/g, (whole, body: string) => {
    if (body[0] === '#') {
      const code = body[1] === 'x' || body[1] === 'X' ? parseInt(body.slice(2), 16) : parseInt(body.slice(1), 10);
      return Number.isFinite(code) && code > 0 && code <= 0x10ffff ? String.fromCodePoint(code) : whole;
    }
    const v = NAMED[body] ?? NAMED[body.toLowerCase()];
    return v ?? whole;
  });
}

export interface HtmlToTextOptions {
  /** Elements with one of these classes (case-insensitive) are dropped with their content. */
  skipClasses?: readonly string[];
  /** Remove leading "   12 " line numbers (number + non-breaking space) inside <pre>. */
  stripLineNumbers?: boolean;
  /** Write headings as markdown-like "# " paragraphs. */
  markHeadings?: boolean;
  /** Indent the lines of <pre> blocks by 4 spaces (marks them as code). */
  indentPre?: boolean;
}

const BLOCK = new Set([
  'p', 'div', 'table', 'tr', 'ul', 'ol', 'dl', 'dt', 'dd', 'li', 'blockquote', 'hr', 'h1', 'h2', 'h3', 'h4',
  'h5', 'h6', 'pre', 'section', 'article', 'header', 'footer', 'body', 'center', 'form', 'address', 'caption',
  'thead', 'tbody', 'tfoot', 'figure', 'title',
]);
const DROP = new Set(['head', 'script', 'style', 'noscript']);
const VOID = new Set(['br', 'hr', 'img', 'meta', 'link', 'input', 'col', 'area', 'base', 'wbr', 'param']);

// Markers inside the intermediate string (never present in decoded input: control chars are stripped first).
const PARA = '\u0001';
const LINE = '\u0002';
const HARD_SPACE = '\u0003';
const HEAD_OPEN = '\u0004';
const HEAD_CLOSE = '\u0005';
const PRE_NBSP = '\u0006';
const PRE_INDENT = '\u0007';

export function htmlToText(html: string, opts: HtmlToTextOptions = {}): string {
  // eslint-disable-next-line no-control-regex
  const src = html.replace(/\r\n?/g, '\n').replace(/[\u0001-\u0008]/g, '');
  const skip = new Set((opts.skipClasses ?? []).map((c) => c.toLowerCase()));
  const tagRe = /<!--[\s\S]*?-->|<!\[CDATA\[[\s\S]*?\]\]>|<![^>]*>|<\?[\s\S]*?\?>|<(\/?)([a-zA-Z][a-zA-Z0-9]*)((?:[^>"']|"[^"]*"|'[^']*')*)>/g;
  let out = '';
  let pos = 0;
  let preDepth = 0;
  // Skipping: the tag name and nesting depth of the element being dropped.
  let skipTag: string | null = null;
  let skipDepth = 0;
  let pendingBullet = false;

  const emitText = (raw: string): void => {
    if (skipTag !== null || raw.length === 0) return;
    let t = decodeEntities(raw);
    if (preDepth > 0) {
      t = t.replace(/\t/g, '        ').replace(/ /g, HARD_SPACE).replace(/\u00a0/g, PRE_NBSP).replace(/\n/g, LINE);
      if (opts.indentPre) t = t.replace(new RegExp(LINE, 'g'), LINE + PRE_INDENT);
    } else {
      t = t.replace(/\u00a0/g, ' ');
    }
    if (pendingBullet && /\S/.test(t)) {
      t = '- ' + t.replace(/^\s+/, '');
      pendingBullet = false;
    }
    out += t;
  };

  let m: RegExpExecArray | null;
  while ((m = tagRe.exec(src)) !== null) {
    emitText(src.slice(pos, m.index));
    pos = m.index + m[0].length;
    const name = m[2]?.toLowerCase();
    if (!name) continue; // comment, doctype, CDATA, processing instruction
    const closing = m[1] === '/';
    const attrs = m[3] ?? '';
    const selfClosing = /\/\s*$/.test(attrs) || VOID.has(name);

    if (skipTag !== null) {
      if (name === skipTag && !selfClosing) {
        skipDepth += closing ? -1 : 1;
        if (skipDepth === 0) skipTag = null;
      }
      continue;
    }
    if (!closing && !selfClosing) {
      const cls = /\bclass\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))/i.exec(attrs);
      const classes = (cls ? cls[1] ?? cls[2] ?? cls[3] ?? '' : '').toLowerCase().split(/\s+/);
      if (DROP.has(name) || classes.some((c) => skip.has(c))) {
        skipTag = name;
        skipDepth = 1;
        continue;
      }
    }
    if (name === 'br') {
      out += LINE;
      continue;
    }
    if (name === 'pre') {
      preDepth = Math.max(0, preDepth + (closing ? -1 : 1));
      out += PARA;
      if (!closing && opts.indentPre) out += PRE_INDENT;
      continue;
    }
    if (/^h[1-6]$/.test(name) && opts.markHeadings) {
      out += closing ? HEAD_CLOSE + PARA : PARA + HEAD_OPEN + name[1];
      continue;
    }
    if (name === 'li') {
      out += PARA;
      pendingBullet = !closing;
      continue;
    }
    if (name === 'td' || name === 'th') {
      out += ' ';
      continue;
    }
    if (BLOCK.has(name)) out += PARA;
  }
  emitText(src.slice(pos));

  // Collapse ordinary whitespace, then turn markers back into layout.
  const paras = out
    .replace(/[ \t\n\f\v]+/g, ' ')
    .split(PARA)
    .map((p) =>
      p
        .split(LINE)
        .map((l) => l.replace(/^ +| +$/g, ''))
        .join('\n'),
    );
  const result: string[] = [];
  for (let p of paras) {
    if (opts.stripLineNumbers) p = p.replace(new RegExp(`^${HARD_SPACE}*\\d+${PRE_NBSP}`, 'gm'), '');
    p = p.replace(new RegExp(`[${HARD_SPACE}${PRE_NBSP}]`, 'g'), ' ').replace(new RegExp(PRE_INDENT, 'g'), '    ');
    p = p
      .split('\n')
      .map((l) => l.replace(/\s+$/, ''))
      .join('\n')
      .replace(/^\n+|\n+$/g, '');
    if (p.includes(HEAD_OPEN)) {
      const level = Number(p[p.indexOf(HEAD_OPEN) + 1]) || 1;
      const text = p.replace(new RegExp(`${HEAD_OPEN}\\d?|${HEAD_CLOSE}`, 'g'), '').replace(/\s+/g, ' ').trim();
      if (text) result.push(`${'#'.repeat(level)} ${text}`);
      continue;
    }
    p = p.replace(new RegExp(HEAD_CLOSE, 'g'), '');
    if (p.trim().length === 0) continue;
    result.push(p);
  }
  return result.join('\n\n');
}
