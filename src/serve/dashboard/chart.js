// The power chart: the house's draw against its limit, solar, and the UPS battery, over the
// samples the daemon kept, drawn as SVG. Times are the daemon's event time; bands mark the
// stretches on battery and in a UPS emergency, and where workloads were shed.

const SVG = "http://www.w3.org/2000/svg";
const MARGIN = { left: 52, right: 44, top: 14, bottom: 28 };

function element(name, attributes = {}, parent = null) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) {
    node.setAttribute(key, String(value));
  }
  if (parent) parent.appendChild(node);
  return node;
}

export function clock(seconds) {
  const date = new Date(seconds * 1000);
  return date.toISOString().slice(11, 16);
}

/// A step line through the samples: each value holds until the next sample.
function steps(samples, value, x, y) {
  let path = "";
  let previous = null;
  for (const sample of samples) {
    const v = value(sample);
    if (v === null || v === undefined) {
      previous = null;
      continue;
    }
    const px = x(sample.now).toFixed(1);
    const py = y(v).toFixed(1);
    if (previous === null) {
      path += `M${px},${py}`;
    } else {
      path += `H${px}V${py}`;
    }
    previous = v;
  }
  if (previous !== null && samples.length) {
    path += `H${x(samples[samples.length - 1].now).toFixed(1)}`;
  }
  return path;
}

/// The stretches of time where `test(sample)` holds, as [start, end] pairs.
function stretches(samples, test, end) {
  const found = [];
  let start = null;
  for (const sample of samples) {
    if (test(sample)) {
      if (start === null) start = sample.now;
    } else if (start !== null) {
      found.push([start, sample.now]);
      start = null;
    }
  }
  if (start !== null) found.push([start, end]);
  return found;
}

function niceStep(range, count) {
  const raw = range / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  for (const factor of [1, 2, 2.5, 5, 10]) {
    if (factor * magnitude >= raw) return factor * magnitude;
  }
  return 10 * magnitude;
}

/// Draws the chart into `container`; `now` is the daemon's event time (the right edge).
export function drawPower(container, samples, now, windowSeconds) {
  // Drawn at the size it is shown, so that its text stays legible on a phone.
  const WIDTH = Math.max(300, Math.round(container.clientWidth || 760));
  const HEIGHT = Math.round(Math.min(280, Math.max(210, WIDTH * 0.34)));
  container.textContent = "";
  const svg = element("svg", {
    viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
    role: "img",
    class: "power-svg",
    "aria-label": "the house's draw, its limit, solar and the UPS battery over the last hours",
  }, container);
  if (!samples.length) {
    element("text", { x: WIDTH / 2, y: HEIGHT / 2, "text-anchor": "middle", class: "empty" }, svg)
      .textContent = "no power readings yet";
    return;
  }
  const first = samples[0].now;
  const end = Math.max(now, samples[samples.length - 1].now);
  const start = Math.max(first, end - windowSeconds);
  const shown = samples.filter((s) => s.now >= start || s === samples[0]);
  const span = Math.max(end - start, 60);
  const top = Math.max(
    1000,
    ...shown.map((s) => Math.max(s.draw || 0, s.limit || 0, s.solar || 0)),
  ) * 1.08;
  const step = niceStep(top, 5);
  const yMax = Math.ceil(top / step) * step;
  const plotW = WIDTH - MARGIN.left - MARGIN.right;
  const plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
  const x = (t) => MARGIN.left + ((Math.max(t, start) - start) / span) * plotW;
  const y = (w) => MARGIN.top + plotH - (w / yMax) * plotH;
  const yPct = (p) => MARGIN.top + plotH - (p / 100) * plotH;

  // Bands first, under the lines.
  const bands = element("g", { class: "bands" }, svg);
  const band = (test, cls, label) => {
    for (const [from, to] of stretches(shown, test, end)) {
      const rect = element("rect", {
        x: x(from), y: MARGIN.top, width: Math.max(x(to) - x(from), 2), height: plotH, class: cls,
      }, bands);
      element("title", {}, rect).textContent = `${label}: ${clock(from)}–${clock(to)}`;
    }
  };
  band((s) => s.ups === "battery", "band-battery", "on battery");
  band((s) => s.emergency, "band-emergency", "UPS emergency");
  band((s) => (s.shed && s.shed.length) || (s.stopped && s.stopped.length), "band-shed", "shedding");

  // Grid and axes.
  const grid = element("g", { class: "grid" }, svg);
  for (let w = 0; w <= yMax; w += step) {
    element("line", { x1: MARGIN.left, x2: WIDTH - MARGIN.right, y1: y(w), y2: y(w) }, grid);
    element("text", { x: MARGIN.left - 6, y: y(w) + 4, "text-anchor": "end", class: "tick" }, grid)
      .textContent = w >= 1000 ? `${(w / 1000).toFixed(w % 1000 ? 1 : 0)} kW` : `${w} W`;
  }
  for (const p of [0, 50, 100]) {
    element("text", { x: WIDTH - MARGIN.right + 6, y: yPct(p) + 4, class: "tick tick-pct" }, grid)
      .textContent = `${p}%`;
  }
  const ticks = Math.max(3, Math.floor(plotW / 70));
  const hour = [120, 600, 1800, 3600, 7200, 10800].find((h) => span / h <= ticks) ?? 21600;
  for (let t = Math.ceil(start / hour) * hour; t <= end; t += hour) {
    element("line", { x1: x(t), x2: x(t), y1: MARGIN.top, y2: MARGIN.top + plotH, class: "vgrid" }, grid);
    element("text", { x: x(t), y: HEIGHT - 8, "text-anchor": "middle", class: "tick" }, grid)
      .textContent = clock(t);
  }

  // The series.
  const solarLine = steps(shown, (s) => s.solar, x, y);
  if (solarLine) {
    element("path", {
      d: `${solarLine}V${y(0)}H${x(shown.find((s) => s.solar !== null)?.now ?? start)}Z`,
      class: "solar-area",
    }, svg);
    element("path", { d: solarLine, class: "solar" }, svg);
  }
  element("path", { d: steps(shown, (s) => s.charge, x, yPct), class: "charge" }, svg);
  element("path", { d: steps(shown, (s) => s.limit, x, y), class: "limit" }, svg);
  element("path", { d: steps(shown, (s) => s.draw, x, y), class: "draw" }, svg);
  element("line", {
    x1: MARGIN.left, x2: MARGIN.left, y1: MARGIN.top, y2: MARGIN.top + plotH, class: "axis",
  }, svg);
  element("line", {
    x1: MARGIN.left, x2: WIDTH - MARGIN.right, y1: MARGIN.top + plotH, y2: MARGIN.top + plotH,
    class: "axis",
  }, svg);
}

/// The legend under the chart.
export function legend(container) {
  container.innerHTML = "";
  for (const [cls, label] of [
    ["draw", "draw"],
    ["limit", "limit"],
    ["solar", "solar"],
    ["charge", "UPS charge (right axis)"],
    ["band-battery", "on battery"],
    ["band-emergency", "UPS emergency"],
    ["band-shed", "shedding"],
  ]) {
    const item = document.createElement("span");
    item.className = "key";
    const swatch = document.createElement("i");
    swatch.className = `swatch ${cls}`;
    item.append(swatch, label);
    container.appendChild(item);
  }
}
