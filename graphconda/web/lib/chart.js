// The downloads chart: an SVG bar chart of a DownloadSeries (one bar per day or month, zeros
// included), with a text label per bar for screen readers and a table-free summary line.
import { el, svg } from "./dom.js";

const WIDTH = 720, HEIGHT = 180, LEFT = 36, BOTTOM = 22, TOP = 8;

function label(period, start) {
  const date = new Date(start);
  return period === "MONTH" ? date.toISOString().slice(0, 7) : date.toISOString().slice(0, 10);
}

export function downloadChart(series, title) {
  const points = series.points.map((p) => ({ start: p.start, count: Number(p.count) }));
  const max = Math.max(1, ...points.map((p) => p.count));
  const plotW = WIDTH - LEFT, plotH = HEIGHT - BOTTOM - TOP;
  const step = points.length ? plotW / points.length : plotW;
  const bars = points.map((p, i) => {
    const h = (p.count / max) * plotH;
    const name = `${label(series.period, p.start)}: ${p.count}`;
    return svg("rect", { x: LEFT + i * step + 1, y: TOP + plotH - h, width: Math.max(1, step - 2), height: Math.max(h, p.count ? 1 : 0),
      class: "bar", "data-start": label(series.period, p.start), "data-count": p.count }, svg("title", {}, name));
  });
  // Axis labels: the top value, and the first, middle and last bucket.
  const ticks = [0, Math.floor(points.length / 2), points.length - 1].filter((i, k, all) => i >= 0 && all.indexOf(i) === k)
    .map((i) => svg("text", { x: i === 0 ? LEFT : i === points.length - 1 ? WIDTH : LEFT + i * step + step / 2, y: HEIGHT - 6,
      "text-anchor": i === 0 ? "start" : i === points.length - 1 ? "end" : "middle", class: "tick" },
      label(series.period, points[i].start)));
  const chart = svg("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img", "aria-label": title, class: "chart" },
    svg("line", { x1: LEFT, y1: TOP + plotH, x2: WIDTH, y2: TOP + plotH, class: "axis" }),
    svg("text", { x: LEFT - 4, y: TOP + 10, "text-anchor": "end", class: "tick" }, String(max)),
    svg("text", { x: LEFT - 4, y: TOP + plotH, "text-anchor": "end", class: "tick" }, "0"),
    ...bars, ...ticks);
  return el("figure", { class: "downloads" }, chart, el("figcaption", { class: "muted" }, title));
}
