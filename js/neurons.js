import { COLORMAPS, colorize } from "./colormap.js";
import { unpack } from "./decode.js";
import { panelHeader, panelWidth, redrawOnResizeOrTheme } from "./header.js";
import { reportView } from "./presence.js";
import { choose, inSelection, layerPicker } from "./selection.js";

// Neuron modes on the package's canvas: one strip per layer with the stacked shares of linear,
// nonlinear and dead neurons against the step, then the neuron x class map of the selected
// layer. Choosing the layer happens here, in the browser, also while the kernel is busy.

const MODES = ["linear", "nonlinear", "dead"];
const STRIP_H = 34;
const LABEL_H = 14;
const GAP = 8;
const CLASS_ROW_H = 12;
// Many activations (a ResNet-18 has 17): thin strips, labelled in a left gutter, grouped by block
export const COMPACT_ABOVE = 8;
export const MAX_STRIPS = 40;
const THIN_H = 12;
const PHASE_COLOR = "rgba(200, 30, 30, 0.85)"; // phase changes, as in the other panels
const EVIDENCE_COLOR = "rgba(227, 160, 8, 0.35)"; // a finding's steps, as in the other panels
const GUTTER = 170;

// The block an activation key belongs to: its module path up to the first numeric component (an
// entry of a Sequential or ModuleList: "layer1.0", "transformer.h.3"), else the first component.
export function blockOf(key) {
  const parts = key.split(/[:#]/)[0].split(".");
  const i = parts.findIndex((p) => /^\d+$/.test(p));
  if (i >= 0) return parts.slice(0, i + 1).join(".");
  return parts[0] || "<model>";
}

// The strips to draw: [{block, layers}] in the frame's order, at most `max` layers (the first
// ones), and how many were left out.
export function stripGroups(layers, max = MAX_STRIPS) {
  const groups = [];
  for (const l of layers.slice(0, max)) {
    const block = blockOf(l.layer);
    if (!groups.length || groups[groups.length - 1].block !== block) groups.push({ block, layers: [] });
    groups[groups.length - 1].layers.push(l);
  }
  return { groups, hidden: Math.max(0, layers.length - max) };
}

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

// Pixels the strips take: full strips with a label row each, or grouped thin strips.
export function stripsHeight(layers) {
  if (layers.length <= COMPACT_ABOVE) return layers.length * (LABEL_H + STRIP_H + GAP);
  const { groups } = stripGroups(layers);
  const shown = groups.reduce((k, g) => k + g.layers.length, 0);
  return LABEL_H + groups.length * LABEL_H + shown * (THIN_H + 2) + GAP;
}

export default {
  render({ model, el }) {
    const gone = reportView(model, el);
    el.classList.add("nnmodes-neurons");
    const MODE_COLORS = model.get("mode_colors"); // linear, nonlinear, dead: the kernel's, as exported
    const legend = Object.assign(document.createElement("span"), { className: "nnmodes-mode-legend" });
    MODES.forEach((mode, i) => {
      const item = Object.assign(document.createElement("span"), { className: "nnmodes-mode-key" });
      const key = Object.assign(document.createElement("span"), { className: "nnmodes-key" });
      key.style.background = MODE_COLORS[i];
      item.append(key, mode);
      legend.append(item);
    });
    const picker = layerPicker(model, () => draw());
    let evidence = null; // [from, to] steps of a finding clicked
    const header = panelHeader(model, "nnmodes-neurons", [legend, picker.el],
      { onEvidence: (span) => { evidence = span; draw(); } });
    const canvas = document.createElement("canvas");
    canvas.className = "nnmodes-canvas";
    const tip = Object.assign(document.createElement("div"), { className: "nnmodes-tooltip" });
    // activations that cannot be seen, and why (the kernel's notices about this analysis)
    const note = Object.assign(document.createElement("div"), { className: "nnmodes-note" });
    el.append(header.el, note, canvas, tip);

    let frame = null;
    let regions = [];
    function draw() {
      const selected = model.get("selected");
      el.closest(".nnmodes-neurons")?.setAttribute("data-selected", selected);
      if (!frame) return;
      const width = panelWidth(el);
      const shown = classLayer(frame.layers, selected);
      const [classes, neurons] = shown ? shown.classes.shape : [0, 0];
      const mapH = shown ? LABEL_H + classes * CLASS_ROW_H + GAP : 0;
      canvas.width = width;
      canvas.height = stripsHeight(frame.layers) + mapH;
      const ctx = canvas.getContext("2d");
      ctx.imageSmoothingEnabled = false;
      const style = getComputedStyle(el);
      const font = style.fontFamily || "sans-serif";
      ctx.font = `11px ${font}`;
      const text = style.color || "#222";
      let lo = Infinity;
      let hi = -Infinity;
      for (const l of frame.layers) {
        lo = Math.min(lo, l.steps.data[0]);
        hi = Math.max(hi, l.steps.data[l.steps.data.length - 1]);
      }
      const compact = frame.layers.length > COMPACT_ABOVE;
      const gutter = Math.min(GUTTER, Math.round(0.4 * width)); // a narrow panel keeps room for strips
      const left = compact ? gutter : 0;
      const span = hi > lo ? hi - lo : 1;
      const xOf = (s) => left + ((s - lo) / span) * (width - left - 2);
      regions = [];
      let top = 0;
      const { groups, hidden } = stripGroups(frame.layers);
      if (compact) {
        ctx.fillStyle = text;
        const count = hidden ? `showing ${frame.layers.length - hidden} of ${frame.layers.length}` : `${frame.layers.length}`;
        ctx.fillText(`${count} activations by block (hover: shares)`, 0, top + 10, width);
        top += LABEL_H;
      }
      for (const group of groups) {
        if (compact) {
          ctx.globalAlpha = 1;
          ctx.fillStyle = text;
          ctx.font = `bold 11px ${font}`;
          ctx.fillText(group.block, 0, top + 11, gutter - 6);
          ctx.font = `11px ${font}`;
          top += LABEL_H;
        }
        for (const l of group.layers) {
          ctx.globalAlpha = inSelection(l.layer, selected) ? 1 : 0.3;
          const steps = l.steps.data;
          const shares = l.shares.data;
          const n = steps.length;
          const last = [shares[3 * (n - 1)], shares[3 * (n - 1) + 1], shares[3 * (n - 1) + 2]];
          ctx.fillStyle = text;
          const stripH = compact ? THIN_H : STRIP_H;
          let y0 = top + LABEL_H;
          if (compact) {
            const name = l.layer.startsWith(group.block) && l.layer !== group.block
              ? l.layer.slice(group.block.length).replace(/^\./, "") : l.layer;
            ctx.fillText(`  ${name}  ${(100 * last[1]).toFixed(0)}% nonlin.`, 0, top + 10, gutter - 6);
            y0 = top;
          } else {
            ctx.fillText(`${l.layer}  ${MODES.map((m, i) => `${m} ${(100 * last[i]).toFixed(0)}%`).join(" · ")}`,
              0, top + 10, width);
          }
          for (let i = 0; i < n; i++) {
            // each sample holds until the next one; the newest gets at least two pixels
            const x = xOf(steps[i]);
            const w = Math.max(2, (i + 1 < n ? xOf(steps[i + 1]) : width) - x);
            let y = y0 + stripH;
            for (let m = 0; m < 3; m++) {
              const h = shares[3 * i + m] * stripH;
              ctx.fillStyle = MODE_COLORS[m];
              ctx.fillRect(x, y - h, w, h);
              y -= h;
            }
          }
          // the steps a finding clicked held on
          if (evidence) {
            const a = xOf(Math.max(lo, evidence[0]));
            const b = xOf(Math.min(hi, evidence[1]));
            ctx.fillStyle = EVIDENCE_COLOR;
            ctx.fillRect(Math.min(a, b) - 1, y0, Math.max(3, Math.abs(b - a) + 2), stripH);
          }
          // the phase changes found over the run (frame.phases: steps), as on every time axis
          ctx.fillStyle = PHASE_COLOR;
          for (const s of frame.phases) {
            if (s >= lo && s <= hi) ctx.fillRect(Math.round(xOf(s)) - 1, y0, 2, stripH);
          }
          regions.push({ kind: "strip", layer: l, top: top, bottom: y0 + stripH, xOf });
          top = compact ? top + THIN_H + 2 : top + LABEL_H + STRIP_H + GAP;
        }
      }
      if (compact) top += GAP;
      ctx.globalAlpha = 1;
      if (shown) {
        ctx.fillStyle = text;
        ctx.fillText(`${shown.layer}: active fraction per ${frame.labels} class (rows), neuron (columns)`, 0, top + 10, width);
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
      frame = { step: meta.step, labels: meta.labels, phases: meta.phases || [],
        layers: frameLayers(unpack(meta.arrays, model.get("frame_data"))) };
      note.textContent = meta.note ?? "";
      draw();
      header.frame(frame.step);
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
