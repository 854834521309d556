export * from './text';
export * from './frames';
export * from './load';
export * from './formats';
export * from './dedupe';
export * from './corpus';
export * from './quality';
export * from './chat';
export * from './tokenize';
export * from './batches';
export * from './columns';
export * from './distill';
/**
 * arquero, the table library behind `Corpus` (tunelab depends on it), re-exported so that notebooks and
 * scripts in any folder can use it without installing it: `import { aq } from 'tunelab'`.
 *
 * @example
 * import { aq, Corpus } from 'tunelab';
 * const c = Corpus.from(aq.table({ body: ['a', 'b'] }), { text: 'body' });
 * c.table.groupby('text').count().print();
 */
export * as aq from 'arquero';
