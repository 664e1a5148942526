// SVG charts drawn by hand: the price-per-carat density of a scan with its partitions, the
// price x carat heat grid of the live catalogue, and small stacked bars. Numbers here only
// place shapes; no money is computed.

const NS = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}, ...children) {
  const element = document.createElementNS(NS, tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== undefined && value !== null) element.setAttribute(name, value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

const tooltip = (text) => svg("title", {}, text);

export function dollarsShort(value) {
  if (value >= 1e6) return `$${+(value / 1e6).toFixed(1)}M`;
  if (value >= 1e3) return `$${+(value / 1e3).toFixed(1)}K`;
  return `$${+value.toFixed(0)}`;
}

const count = (n) => new Intl.NumberFormat("en-US").format(n);

/** Ticks at 1, 2, 5 x 10^k inside [low, high]. */
function logTicks(low, high) {
  const ticks = [];
  for (let power = Math.floor(Math.log10(low)); power <= Math.ceil(Math.log10(high)); power += 1) {
    for (const step of [1, 2, 5]) {
      const value = step * 10 ** power;
      if (value >= low && value <= high) ticks.push(value);
    }
  }
  return ticks;
}

/**
 * Stones per price-per-carat chunk of a density scan, drawn as density over a log price axis
 * (area ~ stones), with the planned partitions as shaded bands and dashed boundaries.
 * `scan` has the shape of a run's stored heatmap: {chunks: [{min, max, count}], partitions: [{id, min, max, estimated}]}.
 */
export function densityChart(scan, { width = 960, height = 300 } = {}) {
  const chunks = scan.chunks.map((c) => ({ min: Number(c.min), max: c.max === null ? null : Number(c.max), count: c.count }));
  const partitions = (scan.partitions ?? []).map((p) => ({ ...p, min: Number(p.min), max: p.max === null ? null : Number(p.max) }));
  const filled = chunks.filter((c) => c.count > 0);
  const margin = { top: 34, right: 16, bottom: 34, left: 16 };
  const root = svg("svg", { class: "chart density", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": `stones per price-per-carat range, ${count(scan.total ?? 0)} in all, cut into ${partitions.length} partitions`, "data-testid": "density-chart" });
  if (filled.length === 0) {
    root.append(svg("text", { x: width / 2, y: height / 2, "text-anchor": "middle" }, "no stones in this scan"));
    return root;
  }
  const finiteTops = chunks.filter((c) => c.max !== null).map((c) => c.max);
  const low = Math.max(1, Math.min(...filled.map((c) => c.min)) || 1);
  const openTop = filled.some((c) => c.max === null);
  const highestFinite = Math.max(...filled.map((c) => c.max ?? c.min), ...finiteTops.slice(-1));
  const high = openTop ? Math.max(highestFinite * 2, low * 10) : Math.max(highestFinite, low * 10);
  const [x0, x1] = [margin.left, width - margin.right];
  const [lo, hi] = [Math.log10(low), Math.log10(high)];
  const x = (price) => x0 + ((Math.log10(Math.min(Math.max(price, low), high)) - lo) / (hi - lo)) * (x1 - x0);
  const top = (max) => (max === null ? high : max + 0.01);
  const baseline = height - margin.bottom;

  const bands = partitions.map((p, i) => {
    const [left, right] = [x(p.min), x(top(p.max))];
    return svg(
      "g",
      { "data-testid": "partition-band" },
      svg("rect", { class: i % 2 ? "band-b" : "band-a", x: left, y: margin.top, width: Math.max(right - left, 0.5), height: baseline - margin.top },
        tooltip(`${p.id}: ${dollarsShort(p.min)} – ${p.max === null ? "∞" : dollarsShort(p.max)} per ct, ~${count(p.estimated)} stones`)),
      right - left > 46
        ? svg("text", { class: "label-strong", x: (left + right) / 2, y: margin.top - 18, "text-anchor": "middle" }, p.id.replace("partition-", "P"))
        : null,
      right - left > 46 ? svg("text", { x: (left + right) / 2, y: margin.top - 5, "text-anchor": "middle" }, count(p.estimated)) : null,
    );
  });

  const bars = filled.map((c) => ({ c, left: x(c.min), right: x(top(c.max)) }));
  const density = (b) => b.c.count / Math.max(b.right - b.left, 1);
  const peak = Math.max(...bars.map(density));
  const rects = bars.map((b) => {
    const barHeight = (density(b) / peak) * (baseline - margin.top - 4);
    return svg(
      "rect",
      { class: "bar", x: b.left, y: baseline - barHeight, width: Math.max(b.right - b.left - 0.5, 1), height: barHeight },
      tooltip(`${dollarsShort(b.c.min)} – ${b.c.max === null ? "∞" : dollarsShort(b.c.max)} per ct: ${count(b.c.count)} stones`),
    );
  });

  const boundaries = partitions.slice(1).map((p) =>
    svg("line", { class: "boundary", x1: x(p.min), x2: x(p.min), y1: margin.top - 4, y2: baseline, "data-testid": "boundary" },
      tooltip(`boundary at ${dollarsShort(p.min)}/ct`)),
  );

  const axis = svg(
    "g",
    {},
    svg("line", { class: "axis", x1: x0, x2: x1, y1: baseline, y2: baseline }),
    logTicks(low, high).map((value) => [
      svg("line", { class: "axis", x1: x(value), x2: x(value), y1: baseline, y2: baseline + 4 }),
      svg("text", { x: x(value), y: baseline + 16, "text-anchor": x(value) > x1 - 24 ? "end" : "middle" }, dollarsShort(value)),
    ]),
    svg("text", { x: x1, y: height - 2, "text-anchor": "end" }, openTop ? "price per carat (log scale; last range open-ended)" : "price per carat (log scale)"),
  );
  root.append(...bands, ...rects, ...boundaries, axis);
  return root;
}

/**
 * The catalogue's stones per (price-per-carat bucket, carat band), shaded by log count; `what`
 * names the stones counted (the filters applied), for the chart's accessible name.
 */
export function heatGrid(heatmap, { width = 960, what = "stones" } = {}) {
  const { buckets, carat_bands: bands, cells } = heatmap;
  const margin = { top: 8, right: 8, bottom: 40, left: 74 };
  const cellHeight = 26;
  const height = margin.top + bands.length * cellHeight + margin.bottom;
  const cellWidth = (width - margin.left - margin.right) / buckets.length;
  const peak = Math.max(1, ...cells.flat());
  const root = svg("svg", { class: "chart heat", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": `${count(heatmap.total)} ${what} by price per carat and carat weight`, "data-testid": "heat-grid" });
  bands.forEach((band, row) => {
    const y = margin.top + (bands.length - 1 - row) * cellHeight;
    const label = band.max_carats === null ? `${band.min_carats}+ ct` : `${band.min_carats}–${band.max_carats} ct`;
    root.append(svg("text", { x: margin.left - 6, y: y + cellHeight / 2 + 4, "text-anchor": "end" }, label));
    buckets.forEach((bucket, column) => {
      const stones = cells[column][row];
      const strength = stones ? 0.12 + 0.88 * (Math.log1p(stones) / Math.log1p(peak)) : 0;
      const range = `${dollarsShort(Number(bucket.min_price_per_carat))}–${bucket.max_price_per_carat === null ? "∞" : dollarsShort(Number(bucket.max_price_per_carat))}/ct`;
      root.append(
        svg("rect", { x: margin.left + column * cellWidth + 1, y: y + 1, width: cellWidth - 2, height: cellHeight - 2, rx: 2,
          fill: stones ? `rgba(47, 95, 208, ${strength.toFixed(3)})` : "#f1f3f6" },
          tooltip(`${label}, ${range}: ${count(stones)} stones`)),
      );
    });
  });
  buckets.forEach((bucket, column) => {
    const xMid = margin.left + column * cellWidth + cellWidth / 2;
    root.append(svg("text", { x: xMid, y: height - margin.bottom + 16, "text-anchor": "middle" }, dollarsShort(Number(bucket.min_price_per_carat))));
  });
  root.append(svg("text", { x: width - margin.right, y: height - 4, "text-anchor": "end" }, "price per carat (bucket start)"));
  return root;
}

/** Stacked bars: `series` = [{label, parts: {name: value}}], coloured by `colours[name]`. */
export function stackedBars(series, colours, { width = 640, height = 180 } = {}) {
  const margin = { top: 10, right: 8, bottom: 24, left: 30 };
  const peak = Math.max(1, ...series.map((s) => Object.values(s.parts).reduce((a, b) => a + b, 0)));
  const slot = (width - margin.left - margin.right) / Math.max(series.length, 1);
  const scale = (height - margin.top - margin.bottom) / peak;
  const baseline = height - margin.bottom;
  const root = svg("svg", { class: "chart bars", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": series.map((s) => `${s.label}: ${Object.entries(s.parts).map(([name, value]) => `${value} ${name}`).join(", ") || "none"}`).join("; "), "data-testid": "bar-chart" });
  root.append(svg("line", { class: "axis", x1: margin.left, x2: width - margin.right, y1: baseline, y2: baseline }));
  root.append(svg("text", { x: margin.left - 6, y: margin.top + 8, "text-anchor": "end" }, peak));
  series.forEach((s, i) => {
    let y = baseline;
    for (const [name, value] of Object.entries(s.parts)) {
      if (!value) continue;
      const barHeight = value * scale;
      y -= barHeight;
      root.append(svg("rect", { x: margin.left + i * slot + slot * 0.15, y, width: slot * 0.7, height: barHeight, fill: colours[name] ?? "#8a94a6" },
        tooltip(`${s.label}: ${value} ${name}`)));
    }
    root.append(svg("text", { x: margin.left + i * slot + slot / 2, y: height - 6, "text-anchor": "middle" }, s.label));
  });
  return root;
}
