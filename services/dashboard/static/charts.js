// Kiln dashboard: small SVG charts, drawn by hand (no library, no network).
// KilnCharts.line({...}) draws learning curves; KilnCharts.heatmap({...}) a confusion matrix.
"use strict";

(function () {
  const NS = "http://www.w3.org/2000/svg";  // the SVG namespace name, not a URL that is fetched

  function el(tag, attrs, text) {
    const node = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== undefined && v !== null) node.setAttribute(k, String(v));
    }
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function niceTicks(lo, hi, count) {
    if (!(hi > lo)) return [lo];
    const raw = (hi - lo) / count;
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
    const ticks = [];
    for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) {
      ticks.push(Number(t.toPrecision(12)));
    }
    return ticks;
  }

  function tickLabel(v) {
    const a = Math.abs(v);
    if (a === 0) return "0";
    if (a >= 1000 || a < 0.001) return v.toExponential(1);
    return String(Number(v.toPrecision(3)));
  }

  // series: [{label, values: [number], color, dashed}]; x is the epoch (1-based).
  function line({ title, series, width = 440, height = 230 }) {
    const pad = { l: 50, r: 12, t: 26, b: 32 };
    const svg = el("svg", {
      class: "chart line-chart",
      viewBox: `0 0 ${width} ${height}`,
      width,
      height,
      role: "img",
      "aria-label": title,
    });
    svg.appendChild(el("text", { x: pad.l, y: 16, class: "chart-title" }, title));
    const finite = series.flatMap((s) => s.values.filter((v) => Number.isFinite(v)));
    const n = Math.max(1, ...series.map((s) => s.values.length));
    const plotW = width - pad.l - pad.r;
    const plotH = height - pad.t - pad.b;
    let lo = finite.length ? Math.min(...finite) : 0;
    let hi = finite.length ? Math.max(...finite) : 1;
    if (hi === lo) {
      lo -= Math.abs(lo) * 0.05 || 0.5;
      hi += Math.abs(hi) * 0.05 || 0.5;
    }
    const margin = (hi - lo) * 0.05;
    lo -= margin;
    hi += margin;
    const x = (i) => pad.l + (n === 1 ? plotW / 2 : (i / (n - 1)) * plotW);
    const y = (v) => pad.t + (1 - (v - lo) / (hi - lo)) * plotH;

    const axes = el("g", { class: "axes" });
    for (const t of niceTicks(lo, hi, 4)) {
      axes.appendChild(el("line", { x1: pad.l, x2: pad.l + plotW, y1: y(t), y2: y(t), class: "grid" }));
      axes.appendChild(el("text", { x: pad.l - 6, y: y(t) + 4, class: "tick", "text-anchor": "end" }, tickLabel(t)));
    }
    const epochs = new Set([1, ...niceTicks(0, n, 5).filter((t) => Number.isInteger(t) && t >= 1 && t <= n)]);
    for (const t of epochs) {
      axes.appendChild(el("text", { x: x(t - 1), y: pad.t + plotH + 16, class: "tick", "text-anchor": "middle" }, String(t)));
    }
    axes.appendChild(el("rect", { x: pad.l, y: pad.t, width: plotW, height: plotH, class: "frame" }));
    axes.appendChild(el("text", { x: pad.l + plotW, y: height - 2, class: "tick", "text-anchor": "end" }, "epoch"));
    svg.appendChild(axes);

    for (const s of series) {
      const pts = [];
      s.values.forEach((v, i) => {
        if (Number.isFinite(v)) pts.push([x(i), y(v)]);
      });
      if (!pts.length) continue;
      const d = pts.map(([px, py], i) => `${i ? "L" : "M"}${px.toFixed(1)} ${py.toFixed(1)}`).join(" ");
      const path = el("path", {
        d,
        class: "curve",
        stroke: s.color,
        fill: "none",
        "stroke-width": s.dashed ? 1.6 : 2,
        "stroke-dasharray": s.dashed ? "5 3" : null,
        "data-series": s.label,
        "data-points": pts.length,
      });
      path.appendChild(el("title", {}, `${s.label}: ${pts.length} epochs, last ${tickLabel(s.values[s.values.length - 1])}`));
      svg.appendChild(path);
      if (pts.length === 1) {
        svg.appendChild(el("circle", { cx: pts[0][0], cy: pts[0][1], r: 2.5, fill: s.color }));
      }
    }
    return svg;
  }

  // The colour of a cell: white for 0, deep blue for the largest share of its row.
  function shade(share) {
    const t = Math.max(0, Math.min(1, share));
    const from = [247, 251, 255];
    const to = [8, 69, 148];
    const c = from.map((f, i) => Math.round(f + (to[i] - f) * t));
    return { fill: `rgb(${c[0]},${c[1]},${c[2]})`, dark: t > 0.55 };
  }

  // matrix[i][j]: rows of true class i predicted as j; labels name the classes.
  function heatmap({ title, matrix, labels, cell = 56 }) {
    const k = matrix.length;
    const pad = { l: 90, t: 56, r: 12, b: 12 };
    const width = pad.l + k * cell + pad.r;
    const height = pad.t + k * cell + pad.b;
    const svg = el("svg", {
      class: "chart heatmap",
      viewBox: `0 0 ${width} ${height}`,
      width,
      height,
      role: "img",
      "aria-label": title,
    });
    svg.appendChild(el("text", { x: 4, y: 16, class: "chart-title" }, title));
    svg.appendChild(el("text", { x: pad.l + (k * cell) / 2, y: 32, class: "axis-label", "text-anchor": "middle" }, "predicted"));
    svg.appendChild(el("text", { x: 4, y: pad.t + (k * cell) / 2, class: "axis-label" }, "true"));
    for (let i = 0; i < k; i++) {
      const total = matrix[i].reduce((a, b) => a + b, 0);
      const label = String(labels[i] ?? i);
      svg.appendChild(el("text", { x: pad.l - 6, y: pad.t + i * cell + cell / 2 + 4, class: "tick", "text-anchor": "end" }, label));
      svg.appendChild(el("text", { x: pad.l + i * cell + cell / 2, y: pad.t - 6, class: "tick", "text-anchor": "middle" }, label));
      for (let j = 0; j < k; j++) {
        const count = matrix[i][j];
        const { fill, dark } = shade(total ? count / total : 0);
        const g = el("g", { class: "cell", "data-true": label, "data-predicted": String(labels[j] ?? j), "data-count": count });
        g.appendChild(el("rect", { x: pad.l + j * cell, y: pad.t + i * cell, width: cell - 2, height: cell - 2, fill, rx: 3 }));
        g.appendChild(el("text", {
          x: pad.l + j * cell + cell / 2 - 1,
          y: pad.t + i * cell + cell / 2 + 4,
          class: dark ? "count dark" : "count",
          "text-anchor": "middle",
        }, String(count)));
        g.appendChild(el("title", {}, `true ${label}, predicted ${labels[j] ?? j}: ${count} of ${total}`));
        svg.appendChild(g);
      }
    }
    return svg;
  }

  // Horizontal bars of values in [0, 1] (class probabilities).
  function bars({ items, width = 360 }) {
    const row = 22;
    const labelW = 90;
    const svg = el("svg", { class: "chart bars", viewBox: `0 0 ${width} ${items.length * row + 4}`, width, height: items.length * row + 4 });
    items.forEach(({ label, value, strong }, i) => {
      const w = Math.max(0, Math.min(1, value)) * (width - labelW - 60);
      svg.appendChild(el("text", { x: labelW - 6, y: i * row + 15, class: "tick", "text-anchor": "end" }, String(label)));
      svg.appendChild(el("rect", { x: labelW, y: i * row + 3, width: Math.max(1, w), height: row - 6, class: strong ? "bar strong" : "bar", rx: 2 }));
      svg.appendChild(el("text", { x: labelW + w + 6, y: i * row + 15, class: "tick" }, value.toFixed(3)));
    });
    return svg;
  }

  window.KilnCharts = { line, heatmap, bars };
})();
