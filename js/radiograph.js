import { COLORMAPS, colorize, valueRange } from "./colormap.js";
import { formatNumber } from "./ticks.js";
import { unpack } from "./decode.js";
import { panelHeader, panelWidth, redrawOnResizeOrTheme } from "./header.js";
import { reportView } from "./presence.js";
import { RingBuffer } from "./ringbuffer.js";
import { choose, inSelection, layerPicker } from "./selection.js";

// Radiographs (and characteristic maps): one band per layer, input side first. A band is a
// matrix heat map (neurons x inputs), or, when the inputs are images, one tile per neuron.
// Every view choice (signed/absolute, colour map, scale, which frame) is made here, in the
// browser: it must work while a training cell keeps the kernel busy.

const TILE_GAP = 2;
const BAND_GAP = 14;
const LABEL_H = 14; // a band's label line above it
const MAX_MATRIX_HEIGHT = 220;

function decodeFrame(model) {
  const meta = model.get("frame_meta");
  if (!meta || !meta.bands) return null;
  return { step: meta.step, bands: unpack(meta.bands, model.get("frame_data")), inputShape: meta.input_shape ?? null,
    note: meta.note ?? "" };
}

// A band with nothing to draw (a class no probe sample has): its label line says why instead.
function emptyLayout() {
  return { kind: "empty", height: 0 };
}

// Pixel layout of one band: tiles when every neuron's inputs form an image, else a matrix.
function bandLayout(band, inputShape, width) {
  const [neurons, inputs] = band.shape;
  if (inputShape && inputShape.length >= 2) {
    const [h, w] = inputShape.slice(-2);
    if (h * w === inputs) {
      const cell = Math.max(2, Math.floor(Math.min(48, width / Math.min(neurons, 16)) / w));
      const tileW = w * cell;
      const perRow = Math.max(1, Math.floor((width + TILE_GAP) / (tileW + TILE_GAP)));
      const rows = Math.ceil(neurons / perRow);
      return { kind: "tiles", h, w, cell, perRow, height: rows * (h * cell + TILE_GAP) };
    }
  }
  const cellH = Math.max(1, Math.min(8, Math.floor(MAX_MATRIX_HEIGHT / neurons)));
  return { kind: "matrix", cellW: width / inputs, cellH, height: neurons * cellH };
}

function transform(values, view, scale) {
  if (view !== "absolute" && scale !== "log") return values; // the default view: no copy
  const out = new Float32Array(values.length);
  for (let i = 0; i < values.length; i++) {
    let v = view === "absolute" ? Math.abs(values[i]) : values[i];
    if (scale === "log") v = Math.sign(v) * Math.log10(1 + Math.abs(v) / 1e-3);
    out[i] = v;
  }
  return out;
}

function drawBand(ctx, band, layout, top, width, options) {
  if (layout.kind === "empty") return [NaN, NaN];
  const values = transform(band.data, options.view, options.scale);
  const signed = options.view === "signed";
  const [lo, hi] = valueRange(values, signed);
  const table = COLORMAPS[options.colormap === "auto" ? (signed ? "rdbu" : "viridis") : options.colormap];
  const [neurons, inputs] = band.shape;
  const off = document.createElement("canvas");
  if (layout.kind === "matrix") {
    off.width = inputs;
    off.height = neurons;
    off.getContext("2d").putImageData(new ImageData(colorize(values, table, lo, hi), inputs, neurons), 0, 0);
    ctx.drawImage(off, 0, top, width, layout.height);
  } else {
    const { h, w, cell, perRow } = layout;
    off.width = w;
    off.height = h * neurons;
    off.getContext("2d").putImageData(new ImageData(colorize(values, table, lo, hi), w, h * neurons), 0, 0);
    for (let n = 0; n < neurons; n++) {
      const x = (n % perRow) * (w * cell + TILE_GAP);
      const y = top + Math.floor(n / perRow) * (h * cell + TILE_GAP);
      ctx.drawImage(off, 0, n * h, w, h, x, y, w * cell, h * cell);
    }
  }
  return [lo, hi];
}

function select(options, current, onChange) {
  const el = document.createElement("select");
  for (const o of options) el.append(new Option(o, o));
  el.value = current;
  el.addEventListener("change", () => onChange(el.value));
  return el;
}

export default {
  render({ model, el }) {
    const gone = reportView(model, el);
    el.classList.add("nnmodes-radiograph");
    const history = new RingBuffer(Math.max(1, model.get("history_size")));
    const options = { view: model.get("view"), colormap: "auto", scale: "linear" };
    const picker = layerPicker(model, () => draw());
    let shown = -1; // index into history; -1 follows the newest frame

    const scrub = Object.assign(document.createElement("input"), { type: "range", min: 0, max: 0, value: 0 });
    scrub.className = "nnmodes-scrub";
    scrub.title = "scrub back through the frames kept in the browser";
    const header = panelHeader(model, "nnmodes-radiograph", [
      select(["signed", "absolute"], options.view, (v) => { options.view = v; draw(); }),
      select(["auto", "viridis", "rdbu"], "auto", (v) => { options.colormap = v; draw(); }),
      select(["linear", "log"], "linear", (v) => { options.scale = v; draw(); }),
      ...(model.get("layers").length ? [picker.el] : []),
      scrub,
    ]);
    const canvas = document.createElement("canvas");
    canvas.className = "nnmodes-canvas";
    const tip = Object.assign(document.createElement("div"), { className: "nnmodes-tooltip" });
    // what the maps leave out or freeze (the kernel's notices about this analysis)
    const note = Object.assign(document.createElement("div"), { className: "nnmodes-note" });
    el.append(header.el, note, canvas, tip);

    let regions = []; // where each band was drawn, for hover
    function draw() {
      const frame = shown < 0 ? history.latest : history.get(shown);
      if (!frame) return;
      const width = panelWidth(el);
      const layouts = frame.bands.map((b) => (b.empty ? emptyLayout() : bandLayout(b, frame.inputShape, width)));
      canvas.width = width;
      canvas.height = layouts.reduce((s, l) => s + l.height + LABEL_H + BAND_GAP, 0);
      const ctx = canvas.getContext("2d");
      ctx.imageSmoothingEnabled = false;
      const style = getComputedStyle(el);
      ctx.font = `11px ${style.fontFamily || "sans-serif"}`;
      const text = style.color || "#222";
      regions = [];
      let top = 0;
      const selected = model.get("selected");
      el.closest(".nnmodes-radiograph")?.setAttribute("data-selected", selected);
      frame.bands.forEach((band, i) => {
        // the selected layer's band stands out: the others are dimmed
        ctx.globalAlpha = inSelection(band.layer, selected) ? 1 : 0.3;
        const [lo, hi] = drawBand(ctx, band, layouts[i], top + LABEL_H, width, options);
        const count = band.neurons > band.shape[0] ? `showing ${band.shape[0]} of ${band.neurons}` : band.shape[0];
        ctx.fillStyle = text;
        ctx.fillText(band.empty ? `${band.layer}: ${band.empty}`
          : `${band.layer}  (${count} neurons, range ${formatNumber(lo)} to ${formatNumber(hi)})`, 0, top + 10, width);
        regions.push({ band, layout: layouts[i], top: top + LABEL_H, width });
        top += layouts[i].height + LABEL_H + BAND_GAP;
      });
      ctx.globalAlpha = 1;
      header.frame(frame.step, `step ${frame.step}` + (shown >= 0 ? ` (${history.length - 1 - shown} back)` : ""));
    }

    function onFrame() {
      const frame = decodeFrame(model);
      if (!frame) return;
      note.textContent = frame.note;
      const full = history.length === history.capacity;
      history.push(frame);
      // a scrubbed-back view keeps its frame: when the oldest drops out, indices slide by one
      if (shown >= 0 && full) shown = Math.max(0, shown - 1);
      scrub.max = String(history.length - 1);
      scrub.value = shown < 0 ? scrub.max : String(shown);
      draw();
    }

    scrub.addEventListener("input", () => {
      const i = Number(scrub.value);
      shown = i >= history.length - 1 ? -1 : i; // at the right end: follow live
      draw();
    });

    canvas.addEventListener("mousemove", (e) => {
      const rect = canvas.getBoundingClientRect();
      const x = ((e.clientX - rect.left) * canvas.width) / rect.width;
      const y = ((e.clientY - rect.top) * canvas.height) / rect.height;
      const hit = regions.find((r) => y >= r.top && y < r.top + r.layout.height);
      if (!hit || hit.layout.kind === "empty") { tip.style.display = "none"; return; }
      const [neurons, inputs] = hit.band.shape;
      let n; let i;
      if (hit.layout.kind === "matrix") {
        n = Math.floor((y - hit.top) / hit.layout.cellH);
        i = Math.floor(x / hit.layout.cellW);
      } else {
        const { h, w, cell, perRow } = hit.layout;
        const col = Math.floor(x / (w * cell + TILE_GAP));
        const row = Math.floor((y - hit.top) / (h * cell + TILE_GAP));
        n = row * perRow + col;
        const px = Math.floor((x - col * (w * cell + TILE_GAP)) / cell);
        const py = Math.floor((y - hit.top - row * (h * cell + TILE_GAP)) / cell);
        i = px < w && py < h ? py * w + px : -1;
      }
      if (n < 0 || n >= neurons || i < 0 || i >= inputs) { tip.style.display = "none"; return; }
      tip.textContent = `${hit.band.layer} · neuron ${n} · input ${i} · ${hit.band.data[n * inputs + i].toPrecision(3)}`;
      tip.style.display = "block";
      tip.style.left = `${e.offsetX + 12}px`;
      tip.style.top = `${e.offsetY + 12}px`;
    });
    canvas.addEventListener("mouseleave", () => { tip.style.display = "none"; });
    // a click on a band selects its layer in every linked panel (again: back to all layers)
    canvas.addEventListener("click", (e) => {
      if (!model.get("layers").length) return; // not a panel of layers (characteristic maps)
      const rect = canvas.getBoundingClientRect();
      const y = ((e.clientY - rect.top) * canvas.height) / rect.height;
      const hit = regions.find((r) => y >= r.top - LABEL_H && y < r.top + r.layout.height);
      if (hit) choose(model, model.get("selected") === hit.band.layer ? "" : hit.band.layer);
    });

    model.on("change:frame_data", onFrame);
    onFrame(); // the newest frame travels in the widget's state: a reloaded page shows it at once
    const resized = redrawOnResizeOrTheme(el, draw);
    return () => {
      resized.disconnect();
      model.off("change:frame_data", onFrame);
      picker.dispose();
      header.dispose();
      gone();
    };
  },
};
