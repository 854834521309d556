/**
 * Charts, tables and live training views for notebooks (tslab) and scripts. Charts use plotly.js from
 * disk (inlined in saved files, served from the kernelspec in notebooks) and carry a static SVG, so
 * notebooks, exported HTML and saved files render without a network.
 *
 * @example
 * import { viz } from 'tunelab';
 * viz.progress(trainer);               // HTML bar in a notebook, terminal bar in a script
 * viz.liveLossChart(trainer);          // one output, redrawn in place (≤ 4/s)
 * const result = await trainer.train();
 * viz.lossChart(result).save('runs/x/loss.html');
 */
export {
  RecordingSink, detectEnvironment, display, displaySink, kernelSink, mimeBundleKey, mimeBundleOf, setDisplaySink, terminalSink, tslabSink,
} from './display';
export type { DisplaySink, LiveDisplay, MimeBundle, DisplayMessage } from './display';
export { locatePlotly, loadPlotly, resetPlotly, plotlyScript, scriptSafe, installPlotly, KERNELSPEC_PLOTLY } from './plotly';
export { chartSvg, ticks, integerTicks } from './svg';
export type { SvgOptions } from './svg';
export type { PlotlyBundle } from './plotly';
export { Chart, chartHtml, saveCharts, standaloneHtml } from './chart';
export type { ChartSize, JsonObject, JsonValue, PlotSpec } from './chart';
export {
  lossChart, smooth, thinIndices, forgettingChart, paretoFront, paretoChart, peftChart,
  taskScoreChart, metricsChart, rewardAccuracyChart, scoreDistributionChart, dpoChart, ppoChart, attentionHeatmap, tokenProbChart,
} from './charts';
export type {
  ChartOptions, StepPoint, EvalPoint, LossHistory, LossArrays, LossChartOptions, ForgettingSeries, ForgettingChartOptions,
  ScorePoint, TaskScoreChartOptions, ParetoPoint, ParetoDirections, ParetoChartOptions, PeftResult, MetricRows, RewardAccuracy, ScoreDistributions, DpoRewards, PpoRun,
  AttentionInput, TokenProb, TokenProbInput,
} from './charts';
export { LiveLossChart, liveLossChart, liveMetricsChart, progress } from './live';
export type { TrainerEventSource, ThrottleOptions, LiveLossChartOptions, ProgressOptions, ProgressHandle } from './live';
export { TerminalProgress, progressLine, formatDuration, progressHtml } from './progress';
export type { ProgressExtras } from './progress';
export { tableHtml, tableMimeBundle, showTable } from './table';
export type { TableOptions } from './table';
export { escapeHtml, tokenLabel } from './html';
