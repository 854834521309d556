/** Reading request content and shaping replies: typed fields, cursor positions, history globs, Jupyter errors. */
import * as util from 'util';
import type { JsonObject } from './wire';

export const str = (c: JsonObject, k: string, d = '') => (typeof c[k] === 'string' ? (c[k] as string) : d);
export const bool = (c: JsonObject, k: string, d: boolean) => (typeof c[k] === 'boolean' ? (c[k] as boolean) : d);
export const int = (c: JsonObject, k: string, d: number) => (typeof c[k] === 'number' ? Math.trunc(c[k] as number) : d);

/** Jupyter counts cursor positions in code points; JavaScript strings index UTF-16 units. */
export function codePointToIndex(s: string, cp: number): number {
  let i = 0;
  for (let n = 0; n < cp && i < s.length; n++) i += (s.codePointAt(i) ?? 0) > 0xffff ? 2 : 1;
  return i;
}
export const indexToCodePoint = (s: string, i: number) => Array.from(s.slice(0, i)).length;

/** Shell-style glob (`*`, `?`, `[...]`) matching a whole string, as IPython's history search does. */
export function globRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i];
    if (c === '*') re += '[\\s\\S]*';
    else if (c === '?') re += '[\\s\\S]';
    else if (c === '[' && glob.indexOf(']', i + 2) > i) {
      // A class: `[abc]`, `[a-z]`, negated `[^...]` (SQLite) or `[!...]` (shell); `]` first is literal.
      const end = glob.indexOf(']', i + 2);
      let body = glob.slice(i + 1, end);
      const negated = body[0] === '^' || body[0] === '!';
      if (negated) body = body.slice(1);
      re += `[${negated ? '^' : ''}${body.replace(/[\\\]^]/g, '\\$&')}]`;
      i = end;
    } else re += c.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

export interface JupyterError {
  ename: string;
  evalue: string;
  traceback: string[];
}

/** Turns what tslab's executor reported through `console.error` into one Jupyter error. */
export function toJupyterError(reports: unknown[][]): JupyterError {
  const thrown = reports.find((r) => r.length === 1);
  if (thrown) {
    const e = thrown[0];
    if (e instanceof Error || (typeof e === 'object' && e !== null && 'stack' in e && 'message' in e)) {
      const err = e as Error;
      const ename = err.name || err.constructor?.name || 'Error';
      const stack = (typeof err.stack === 'string' ? err.stack : `${ename}: ${err.message}`).split('\n');
      // Frames of the kernel (src|dist/kernel/*), tslab and node internals say nothing about the user's code.
      const own = stack.filter((l) => !/^\s+at /.test(l) || !/(node:vm|node:internal|[/\\]tslab[/\\]dist[/\\]|[/\\](src|dist)[/\\]kernel[/\\.])/.test(l));
      return { ename, evalue: String(err.message ?? ''), traceback: own };
    }
    const evalue = util.inspect(e);
    return { ename: 'Uncaught', evalue, traceback: [`Uncaught ${evalue}`] };
  }
  // Type errors: tslab prints each as ("%s%d:%d - %s", file, line, column, message).
  const lines = reports.map((r) => util.format(...r));
  if (lines.length === 0) return { ename: 'Error', evalue: 'execution failed', traceback: ['Error: execution failed'] };
  return { ename: 'CompileError', evalue: lines.join('\n'), traceback: lines };
}
