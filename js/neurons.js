import { COLORMAPS, colorize } from "./colormap.js";
import { unpack } from "./decode.js";
import { rootCounter } from "./root.js";
import { choose, inSelection, layerPicker } from "./selection.js";

// Neuron modes on the package's canvas: one strip per layer with the stacked shares of linear,
// nonlinear and dead neurons against the step, then the neuron x class map of the selected
// layer. Choosing the layer happens here, in the browser, also while the kernel is busy.

const MODES = ["linear", "nonlinear", "dead"];
const STRIP_H = 34;
const LABEL_H = 14;
const GAP = 8;
const CLASS_ROW_H = 12;

// Group the frame's arrays by layer: {layer: {steps, shares, classes}}, in the frame's order.
export function frameLayers(arrays) {
  const layers = new Map();
  for (const a of arrays) {
    if (!layers.has(a.layer)) layers.set(a.layer, { layer: a.layer });
    layers.get(a.layer)[a.kind] = a;
  }
  return [...layers.values()];
}

// The layer whose class map is shown: the selected one if it has classes, else the first that has.
export function classLayer(layers, selected) {
  const withClasses = layers.filter((l) => l.classes);
  return withClasses.find((l) => l.layer === selected) ?? withClasses[0] ?? null;
}

export default {
  render({ model, el }) {
    el.classList.add("nnmodes-neurons");
    const MODE_COLORS = model.get("mode_colors"); // linear, nonlinear, dead: the kernel's, as exported
    const counter = rootCounter(el, "nnmodes-neurons");
    const header = document.createElement("div");
    header.className = "nnmodes-trend-header";
    const title = Object.assign(document.createElement("span"), { className: "nnmodes-title" });
    title.textContent = model.get("title");
    const legend = document.createElement("span");
    MODES.forEach((mode, i) => {
      const key = Object.assign(document.createElement("span"), { className: "nnmodes-key" });
      key.style.background = MODE_COLORS[i];
      legend.append(key, ` ${mode} `);
    });
    const picker = layerPicker(model, () => draw());
    const stepLabel = Object.assign(document.createElement("span"), { className: "nnmodes-step" });
    header.append(title, legend, picker.el, stepLabel);
    const canvas = document.createElement("canvas");
    canvas.className = "nnmodes-canvas";
    const tip = Object.assign(document.createElement("div"), { className: "nnmodes-tooltip" });
    el.append(header, canvas, tip);

    let frame = null;
    let regions = [];
    function draw() {
      const selected = model.get("selected");
      el.closest(".nnmodes-neurons")?.setAttribute("data-selected", selected);
      if (!frame) return;
      const width = Math.max(200, Math.min(900, el.clientWidth || 700));
      const shown = classLayer(frame.layers, selected);
      const [classes, neurons] = shown ? shown.classes.shape : [0, 0];
      const mapH = shown ? LABEL_H + classes * CLASS_ROW_H + GAP : 0;
      canvas.width = width;
      canvas.height = frame.layers.length * (LABEL_H + STRIP_H + GAP) + mapH;
      const ctx = canvas.getContext("2d");
      ctx.imageSmoothingEnabled = false;
      ctx.font = "11px sans-serif";
      const text = getComputedStyle(el).color || "#222";
      let lo = Infinity;
      let hi = -Infinity;
      for (const l of frame.layers) {
        lo = Math.min(lo, l.steps.data[0]);
        hi = Math.max(hi, l.steps.data[l.steps.data.length - 1]);
      }
      const span = hi > lo ? hi - lo : 1;
      const xOf = (s) => ((s - lo) / span) * (width - 2);
      regions = [];
      let top = 0;
      for (const l of frame.layers) {
        ctx.globalAlpha = inSelection(l.layer, selected) ? 1 : 0.3;
        const steps = l.steps.data;
        const shares = l.shares.data;
        const n = steps.length;
        const last = [shares[3 * (n - 1)], shares[3 * (n - 1) + 1], shares[3 * (n - 1) + 2]];
        ctx.fillStyle = text;
        ctx.fillText(`${l.layer}  ${MODES.map((m, i) => `${m} ${(100 * last[i]).toFixed(0)}%`).join(" · ")}`,
          0, top + 10);
        const y0 = top + LABEL_H;
        for (let i = 0; i < n; i++) {
          // each sample holds until the next one; the newest gets at least two pixels
          const x = xOf(steps[i]);
          const w = Math.max(2, (i + 1 < n ? xOf(steps[i + 1]) : width) - x);
          let y = y0 + STRIP_H;
          for (let m = 0; m < 3; m++) {
            const h = shares[3 * i + m] * STRIP_H;
            ctx.fillStyle = MODE_COLORS[m];
            ctx.fillRect(x, y - h, w, h);
            y -= h;
          }
        }
        regions.push({ kind: "strip", layer: l, top: top, bottom: y0 + STRIP_H, xOf });
        top += LABEL_H + STRIP_H + GAP;
      }
      ctx.globalAlpha = 1;
      if (shown) {
        ctx.fillStyle = text;
        ctx.fillText(`${shown.layer}: active fraction per ${frame.labels} class (rows) and neuron (columns)`, 0, top + 10);
        const values = shown.classes.data;
        const off = document.createElement("canvas");
        off.width = neurons;
        off.height = classes;
        off.getContext("2d").putImageData(
          new ImageData(colorize(values, COLORMAPS.viridis, 0, 1), neurons, classes), 0, 0);
        ctx.drawImage(off, 0, top + LABEL_H, width, classes * CLASS_ROW_H);
        regions.push({ kind: "classes", layer: shown, top: top + LABEL_H, bottom: top + LABEL_H + classes * CLASS_ROW_H, width });
      }
    }

    function onFrame() {
      const meta = model.get("frame_meta");
      if (!meta || !meta.arrays) return;
      frame = { step: meta.step, labels: meta.labels, layers: frameLayers(unpack(meta.arrays, model.get("frame_data"))) };
      stepLabel.textContent = `step ${frame.step}`;
      draw();
      counter.frame(frame.step);
    }

    function hitAt(e) {
      const rect = canvas.getBoundingClientRect();
      const x = ((e.clientX - rect.left) * canvas.width) / rect.width;
      const y = ((e.clientY - rect.top) * canvas.height) / rect.height;
      return { x, y, region: regions.find((r) => y >= r.top && y < r.bottom) };
    }

    canvas.addEventListener("mousemove", (e) => {
      const { x, y, region } = hitAt(e);
      if (!region) { tip.style.display = "none"; return; }
      if (region.kind === "strip") {
        const steps = region.layer.steps.data;
        let i = 0;
        while (i + 1 < steps.length && region.xOf(steps[i + 1]) <= x) i++;
        const s = region.layer.shares.data;
        tip.textContent = `${region.layer.layer} · step ${steps[i]} · ${MODES.map((m, k) => `${m} ${(100 * s[3 * i + k]).toFixed(1)}%`).join(" · ")}`;
      } else {
        const [classes, neurons] = region.layer.classes.shape;
        const c = Math.min(classes - 1, Math.floor((y - region.top) / CLASS_ROW_H));
        const n = Math.min(neurons - 1, Math.floor((x / region.width) * neurons));
        tip.textContent = `${region.layer.layer} · class ${c} · neuron ${n} · active ${region.layer.classes.data[c * neurons + n].toPrecision(3)}`;
      }
      tip.style.display = "block";
      tip.style.left = `${e.offsetX + 12}px`;
      tip.style.top = `${e.offsetY + 12}px`;
    });
    canvas.addEventListener("mouseleave", () => { tip.style.display = "none"; });
    // a click on a layer's strip selects it in every linked panel (again: back to all layers)
    canvas.addEventListener("click", (e) => {
      const { region } = hitAt(e);
      if (region?.kind === "strip") {
        choose(model, model.get("selected") === region.layer.layer ? "" : region.layer.layer);
      }
    });

    model.on("change:frame_data", onFrame);
    onFrame(); // the newest frame travels in the widget's state: a reloaded page shows it at once
    return () => {
      model.off("change:frame_data", onFrame);
      picker.dispose();
    };
  },
};
