/** Task evaluation in the lm-evaluation-harness style: tasks, their scores with intervals, shipped tasks. */
export * from './task';
export * from './ci';
export * from './requests';
export * from './evaluate';
export * from './table';
export * from './shipped';
