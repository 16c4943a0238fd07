import { classColors, layerColors, lineColor, onThemeChange, themeOf } from "./palette.js";
import { coalesce, modelOf } from "./root.js";
import { bindAxisTicks } from "./ticks.js";

// What the browser styles in a panel's bqplot figures (nnmodes_widgets/widgets/front.py
// FigureFront): the lines' colours, from the panel's palette and the page's theme; the axes'
// ticks. Both set on the browser's models only, like the selection's highlight: the kernel
// sends neither, so they follow the theme and work while the kernel is busy.

const same = (a, b) => Array.isArray(a) && a.length === b.length && a.every((v, i) => v === b[i]);

// The colours of a mark's lines: per layer from the palette, or categorical ("classes").
export function markColors(labels, kind, palette, theme) {
  if (kind === "classes") return classColors(labels.length, theme);
  const colors = layerColors(palette?.keys ?? [], palette?.clusters ?? null, theme);
  return labels.map((label) => lineColor(label, colors, theme));
}

// Style the figures of the panel `model`; resolves to the cleanup. Colours are set after the
// kernel's message that changed the labels has been applied in full (see selection.js
// highlightOnLabels: never inside the mark's own change event).
export async function styleFigures(model) {
  const refs = (name) => Promise.all((model.get(name) ?? []).map((ref) => modelOf(model, ref)));
  const [marks, axes] = await Promise.all([refs("marks"), refs("axes")]);
  const kinds = model.get("mark_kinds") ?? [];
  const recolor = () => {
    const theme = themeOf();
    marks.forEach((mark, i) => {
      const colors = markColors(mark.get("labels") ?? [], kinds[i], model.get("palette"), theme);
      if (!same(mark.get("colors"), colors)) mark.set("colors", colors);
    });
  };
  const later = coalesce(recolor);
  for (const mark of marks) mark.on("change:labels", later);
  model.on("change:palette", later);
  const stopTheme = onThemeChange(later);
  const unbind = axes.map(bindAxisTicks);
  recolor();
  return () => {
    for (const mark of marks) mark.off("change:labels", later);
    model.off("change:palette", later);
    stopTheme();
    unbind.forEach((stop) => stop());
  };
}

// Place the panel's evidence bands (one per time axis) on the steps `span` = [from, to] of a
// finding clicked; null hides them.
export async function markEvidence(model, span) {
  const bands = await Promise.all((model.get("evidence") ?? []).map((ref) => modelOf(model, ref)));
  for (const band of bands) {
    if (!span) {
      band.set("visible", false);
      continue;
    }
    const [a, b] = span;
    band.set({ x: [[a, a, b, b, a]], y: [[0, 1, 1, 0, 0]], visible: true });
  }
}

// anywidget's initialize of a panel of figures: style them while the model lives.
export function initializeFigures(model) {
  const done = styleFigures(model).catch((e) => {
    console.warn("nnmodes_widgets: figures not styled:", e);
    return () => {};
  });
  return () => done.then((stop) => stop());
}
