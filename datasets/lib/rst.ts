/**
 * Light reStructuredText (Sphinx) to plain text, for the Python 3.11 documentation sources.
 *
 * Not a parser: a line-based pass that removes markup a reader of the rendered page would not
 * see and keeps everything else.
 * - section adornments, transitions, comments, targets, substitution definitions and
 *   bookkeeping directives (index, toctree, module, highlight, only, ...) are dropped;
 * - object directives (function, class, method, ...) become their signature line followed by
 *   their (dedented) body;
 * - admonitions become "Note: ...", "New in version 3.4.", "Changed in version 3.2: ...";
 * - code directives and literal blocks ("::") are kept verbatim, indented by 4 spaces;
 * - roles become their text (`:func:`f`` → "f()", `:pep:`8`` → "PEP 8", `:ref:`text <x>`` →
 *   "text"), ``literals`` their content, emphasis and strong their text, hyperlinks their title.
 */

const DROP = new Set([
  'index', 'toctree', 'module', 'moduleauthor', 'sectionauthor', 'highlight', 'currentmodule', 'tabularcolumns',
  'include', 'literalinclude', 'image', 'figure', 'only', 'contents', 'testsetup', 'testcleanup', 'audit-event',
  'raw', 'program', 'default-role', 'c:namespace', 'c:namespace-push', 'c:namespace-pop', 'role', 'py:module',
  'py:currentmodule', 'miscnews', 'autoclass', 'autofunction', 'automodule', 'sidebar',
]);

const CODE = new Set([
  'code-block', 'code', 'sourcecode', 'doctest', 'testcode', 'testoutput', 'parsed-literal', 'productionlist',
]);

const ADMONITION: Record<string, string> = {
  note: 'Note:', warning: 'Warning:', seealso: 'See also:', important: 'Important:', caution: 'Caution:',
  tip: 'Tip:', attention: 'Attention:', hint: 'Hint:', danger: 'Danger:', error: 'Error:', admonition: '',
  'impl-detail': 'CPython implementation detail:', topic: '', rubric: '', centered: '',
};

const SIGNATURE = new Set([
  'function', 'method', 'class', 'attribute', 'data', 'exception', 'decorator', 'decoratormethod', 'classmethod',
  'staticmethod', 'coroutinemethod', 'coroutinefunction', 'abstractmethod', 'awaitablemethod', 'awaitablefunction',
  'describe', 'object', 'envvar', 'cmdoption', 'option', 'opcode', 'pdbcommand', '2to3fixer', 'c:function',
  'c:member', 'c:type', 'c:macro', 'c:var', 'c:data', 'c:struct', 'c:enum', 'c:enumerator', 'c:union',
  'py:function', 'py:method', 'py:class', 'py:attribute', 'py:data', 'py:exception', 'py:decorator',
  'monitoring-event', 'property',
]);

const SUBSTITUTIONS: Record<string, string> = {
  version: '3.11', release: '3.11', today: '', 'python-x.y': 'python3.11', 'usr': '/usr',
};

const indentOf = (l: string): number => /^ */.exec(l)![0].length;
const isBlank = (l: string): boolean => l.trim().length === 0;

function dedent(lines: string[]): string[] {
  const ind = Math.min(...lines.filter((l) => !isBlank(l)).map(indentOf));
  return lines.map((l) => (isBlank(l) ? '' : l.slice(Number.isFinite(ind) ? ind : 0)));
}

function asCode(lines: string[]): string[] {
  const body = dedent(trimBlank(lines));
  return body.length ? ['', ...body.map((l) => (l ? '    ' + l : '')), ''] : [];
}

function trimBlank(lines: string[]): string[] {
  let a = 0;
  let b = lines.length;
  while (a < b && isBlank(lines[a])) a++;
  while (b > a && isBlank(lines[b - 1])) b--;
  return lines.slice(a, b);
}

const ADORNMENT = /^([!-/:-@[-`{-~])\1{3,}\s*$/;

/** Section titles by label (lower case), to render `:ref:` without an explicit title. */
let LABELS: ReadonlyMap<string, string> = new Map();

/** Text of a role, as Sphinx renders it. */
function roleText(role: string, content: string): string {
  const name = role.replace(/^:|:$/g, '').replace(/^py:/, '');
  let text = content.replace(/\\(.)/g, '$1');
  let explicit = false;
  const titled = /^([\s\S]*?)\s*<([^<>]+)>$/.exec(text);
  if (titled && titled[1].trim()) {
    text = titled[1];
    explicit = true;
  } else if (titled) {
    text = titled[2];
  }
  text = text.replace(/\s+/g, ' ');
  if (name === 'pep' || name === 'rfc') {
    return explicit ? text : `${name.toUpperCase()} ${text.replace(/#.*$/, '')}`;
  }
  if (!explicit && name === 'ref') return LABELS.get(text.toLowerCase()) ?? text.replace(/[-_]/g, ' ');
  if (!explicit && name === 'doc') return text.split('/').pop() ?? text;
  if (!explicit) {
    if (text.startsWith('~')) text = text.slice(1).split('.').pop() ?? text;
    if (text.startsWith('!')) text = text.slice(1);
    if (/^(c:)?(func|meth|macro)$/.test(name) && !text.endsWith(')')) text += '()';
  }
  return text;
}

/** Inline markup of one paragraph (possibly several lines). */
export function inlineRst(text: string): string {
  const saved: string[] = [];
  const keep = (s: string): string => `\u0001${saved.push(s) - 1}\u0002`;
  // ``literal``
  let t = text.replace(/``([\s\S]+?)``(?!`)/g, (_, s: string) => keep(s));
  // roles, interpreted text and hyperlink references
  t = t.replace(/(:[\w:.+-]+:)?`((?:[^`\\]|\\[\s\S])+)`(:[\w:.+-]+:)?(__?)?/g, (_, pre?: string, body?: string, post?: string, link?: string) => {
    const b = body ?? '';
    if (link) {
      const m = /^([\s\S]*?)\s*<[^<>]+>$/.exec(b);
      return keep((m && m[1].trim() ? m[1] : b).replace(/\s+/g, ' '));
    }
    const role = pre ?? post;
    return keep(role ? roleText(role, b) : b.replace(/\\(.)/g, '$1'));
  });
  // footnote and citation references
  t = t.replace(/\s?\[(?:#[\w-]*|\d+|\*|[A-Za-z][\w-]*)\]_/g, '');
  // substitutions
  t = t.replace(/\s*\|nbsp\|\s*/g, ' ');
  t = t.replace(/\|([\w.-]+)\|(_{0,2})/g, (whole, name: string) => (name in SUBSTITUTIONS ? SUBSTITUTIONS[name] : whole));
  // strong and emphasis
  const open = `(^|[\\s(\\[{<'"“‘/-])`;
  const close = `(?=$|[\\s)\\]}>'".,;:!?”’/-])`;
  t = t.replace(new RegExp(`${open}\\*\\*(?=\\S)([\\s\\S]*?\\S)\\*\\*${close}`, 'g'), '$1$2');
  t = t.replace(new RegExp(`${open}\\*(?=[^\\s*])([^*]*?[^\\s*\\\\])\\*${close}`, 'g'), '$1$2');
  // escapes: "\ " disappears, "\x" is x
  t = t.replace(/\\ /g, '').replace(/\\(.)/g, '$1');
  // a question used as a link title followed by the sentence's full stop: "...calls?." → "...calls?"
  t = t.replace(/(\u0001\d+\u0002)\./g, (whole, ref: string) => (/[?!]$/.test(saved[Number(ref.slice(1, -1))] ?? '') ? ref : whole));
  return t.replace(/\u0001(\d+)\u0002/g, (_, i: string) => saved[Number(i)]);
}

const LIST_ITEM = /^(\s*)((?:[-*+•]|\d+[.)]|#\.|\(\d+\)|[a-z][.)])\s+)/;

/**
 * Joins the hard-wrapped lines of a paragraph: a line continues the previous one when it is
 * indented like the previous line's text (a list item's text starts after its bullet) and is
 * neither a list item, a table row nor a line block.
 */
function unwrap(lines: string[]): string[] {
  const out: string[] = [];
  let cont = -1;
  for (const line of lines) {
    const item = LIST_ITEM.exec(line);
    const ind = indentOf(line);
    const special = /^\s*[|+]/.test(line);
    if (out.length && !item && !special && ind === cont && !/^\s*[|+]/.test(out[out.length - 1])) {
      out[out.length - 1] = `${out[out.length - 1].trimEnd()} ${line.trim()}`;
      continue;
    }
    out.push(line.replace(/(\S) {2,}(?=\S)/g, '$1 '));
    cont = item ? item[1].length + item[2].length : ind;
  }
  return out.map((l) => l.replace(/(\S) {2,}(?=\S)/g, '$1 '));
}

/** Cleans one block of lines (recursively for directive bodies). */
function block(lines: string[]): string[] {
  const out: string[] = [];
  let para: string[] = [];
  const flush = (): void => {
    if (para.length) {
      out.push(...unwrap(inlineRst(para.join('\n')).split('\n')));
      para = [];
    }
  };
  let i = 0;
  let literalAfter: number | null = null; // indentation of a paragraph that ended with "::"
  while (i < lines.length) {
    const line = lines[i];
    if (isBlank(line)) {
      flush();
      out.push('');
      i++;
      continue;
    }
    const ind = indentOf(line);
    if (literalAfter !== null) {
      if (ind > literalAfter) {
        let j = i;
        while (j < lines.length && (isBlank(lines[j]) || indentOf(lines[j]) > literalAfter)) j++;
        out.push(...asCode(lines.slice(i, j)));
        i = j;
        literalAfter = null;
        continue;
      }
      literalAfter = null;
    }
    const dir = /^(\s*)\.\.\s+([\w:.-]+)::(?:\s+(.*))?$/.exec(line);
    const comment = !dir && /^\s*\.\.(\s|$)/.test(line);
    if (dir || comment) {
      flush();
      let arg = dir?.[3] ?? '';
      let j = i + 1;
      while (arg.endsWith('\\') && j < lines.length) {
        arg = arg.slice(0, -1).trimEnd() + ' ' + lines[j].trim();
        j++;
      }
      const start = j;
      while (j < lines.length && (isBlank(lines[j]) || indentOf(lines[j]) > ind)) j++;
      let end = j;
      while (end > start && isBlank(lines[end - 1])) end--;
      i = end;
      if (comment) continue;
      const name = dir![2].toLowerCase();
      let body = lines.slice(start, end);
      // directive options (":synopsis: ...") right after the directive line
      let k = 0;
      while (k < body.length && /^\s*:[\w -]+:(\s|$)/.test(body[k])) k++;
      body = body.slice(k);
      if (DROP.has(name)) continue;
      if (CODE.has(name)) {
        // parsed-literal blocks expand substitutions (the license texts use |release|)
        if (name === 'parsed-literal') body = body.map((l) => l.replace(/\|(version|release)\|/g, SUBSTITUTIONS.release));
        out.push(...asCode(body));
        continue;
      }
      const inner = body.some((l) => !isBlank(l)) ? trimBlank(block(dedent(body))) : [];
      let lead: string | null = null;
      const [ver, ...restWords] = arg.trim().split(/\s+/);
      const rest = inlineRst(restWords.join(' '));
      if (name === 'versionadded') lead = rest ? `New in version ${ver}: ${rest}` : `New in version ${ver}.`;
      else if (name === 'versionchanged') lead = rest ? `Changed in version ${ver}: ${rest}` : `Changed in version ${ver}:`;
      else if (name === 'deprecated') lead = rest ? `Deprecated since version ${ver}: ${rest}` : `Deprecated since version ${ver}:`;
      else if (name === 'deprecated-removed') {
        const [a, b] = arg.trim().split(/\s+/);
        lead = `Deprecated since version ${a}, will be removed in version ${b}:`;
      } else if (name === 'availability') lead = `Availability: ${inlineRst(arg.trim())}.`;
      else if (name in ADMONITION) lead = [ADMONITION[name], inlineRst(arg.trim())].filter(Boolean).join(' ');
      if (lead !== null) {
        if (inner.length && !isBlank(inner[0]) && !/^ /.test(inner[0])) {
          out.push('', `${lead} ${inner[0]}`.trim(), ...inner.slice(1), '');
        } else {
          if (lead.endsWith(':') && inner.length === 0) lead = lead.slice(0, -1) + '.';
          out.push('', lead, ...(inner.length ? ['', ...inner] : []), '');
        }
        continue;
      }
      if (SIGNATURE.has(name)) {
        const kind = /^(?:py:)?(class|exception|classmethod|staticmethod|abstractmethod|coroutinefunction|coroutinemethod)$/.exec(name);
        const prefix = kind ? `${kind[1].replace(/^coroutine.*/, 'coroutine')} ` : name.endsWith('decorator') ? '@' : '';
        out.push('', prefix + arg.replace(/\s+/g, ' ').trim(), ...(inner.length ? ['', ...inner] : []), '');
        continue;
      }
      // Unknown or container directive (glossary, list-table, tables, ...): keep its content.
      out.push('', ...(arg.trim() ? [inlineRst(arg.trim()), ''] : []), ...inner, '');
      continue;
    }
    if (ADORNMENT.test(line)) {
      flush();
      i++;
      continue;
    }
    const trimmed = line.trimEnd();
    if (trimmed.endsWith('::')) {
      const stripped = trimmed.trim() === '::' ? '' : trimmed.endsWith(' ::') ? trimmed.slice(0, -3) : trimmed.slice(0, -1);
      // the paragraph's text indentation: a list item's text starts after its bullet
      const item = para.length ? null : LIST_ITEM.exec(line);
      literalAfter = item ? item[1].length + item[2].length : ind;
      if (stripped.trim()) para.push(stripped);
      flush();
      i++;
      continue;
    }
    if (/^\s*>>>/.test(line) && para.length === 0) {
      // doctest block: up to the next blank line
      let j = i;
      while (j < lines.length && !isBlank(lines[j])) j++;
      out.push(...asCode(lines.slice(i, j)));
      i = j;
      continue;
    }
    para.push(line);
    i++;
  }
  flush();
  return out;
}

export function rstToText(src: string, labels?: ReadonlyMap<string, string>): string {
  if (labels) LABELS = labels;
  let lines = src.replace(/\r\n?/g, '\n').replace(/\t/g, '        ').split('\n');
  // file-wide fields (":tocdepth: 2", ":orphan:") before the content
  let k = 0;
  while (k < lines.length && (isBlank(lines[k]) || /^:[\w-]+:(\s.*)?$/.test(lines[k]))) k++;
  lines = lines.slice(k);
  return block(lines)
    .map((l) => l.trimEnd())
    .join('\n')
    .replace(/\n{3,}/g, '\n\n')
    .trim();
}
