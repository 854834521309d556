/** The Plotly figure as data: what a chart holds and what both its renderers (Plotly, the static SVG) read. */
/** A JSON value as Plotly reads it. */
export type JsonValue = string | number | boolean | null | readonly JsonValue[] | JsonObject;
/** A JSON object (a Plotly trace, layout or config). */
export interface JsonObject {
  [key: string]: JsonValue | undefined;
}

/** A Plotly figure: the arguments of `Plotly.newPlot(div, data, layout, config)`. */
export interface PlotSpec {
  data: JsonObject[];
  layout: JsonObject;
  config?: JsonObject;
}
