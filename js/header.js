import { onThemeChange } from "./palette.js";
import { onRoot, referencedModel, rootCounter } from "./root.js";

// The header of every panel (SPEC 16): a fold switch, the title, the panel's controls and the
// step of the frame on screen; under them how to read the panel and the paper it comes from;
// when the panel has nothing to show, why (its body is hidden then, js/widgets.css). A finding
// clicked in the dashboard's strip reaches the panel as an EVIDENCE event on its root: the
// panel unfolds and marks the steps the finding held on (`onEvidence(span)`; null clears).

export const EVIDENCE = "nnmodes-evidence";

function element(tag, className, text = "") {
  const node = document.createElement(tag);
  node.className = className;
  if (text) node.textContent = text;
  return node;
}

// The model's `detail` (what this run's panel shows), its `help`, then its `reference` linked to
// `reference_url` (a new tab: the notebook stays).
function fillHelp(node, model) {
  const reference = model.get("reference");
  const detail = model.get("detail");
  const parts = [];
  if (detail) parts.push(element("span", "nnmodes-detail", detail), " ");
  parts.push(model.get("help"));
  if (reference) {
    const link = element("a", "nnmodes-reference", reference);
    link.href = model.get("reference_url");
    link.target = "_blank";
    link.rel = "noopener";
    parts.push(" Source: ", link);
  }
  node.replaceChildren(...parts);
}

// Returns { el (to place first in the panel), frame(step, label?) (a frame drawn: the step
// shown, counted on the root), dispose() }.
export function panelHeader(model, rootClass, controls = [], { onEvidence = () => {} } = {}) {
  const el = element("div", "nnmodes-header");
  const row = element("div", "nnmodes-trend-header"); // the name the tests know the row by
  const fold = element("button", "nnmodes-fold", "▾");
  fold.type = "button";
  fold.title = "fold or unfold this panel";
  const title = element("span", "nnmodes-title");
  const stepLabel = element("span", "nnmodes-step");
  row.append(fold, title, ...controls, stepLabel);
  const help = element("div", "nnmodes-help");
  const empty = element("div", "nnmodes-empty");
  el.append(row, help, empty);
  const counter = rootCounter(el, rootClass);
  let root = null;

  const fill = () => {
    title.textContent = model.get("title");
    fillHelp(help, model);
    empty.textContent = model.get("empty") ?? "";
    if (root) root.toggleAttribute("data-empty", Boolean(model.get("empty")));
  };
  const setFolded = (folded) => {
    root?.classList.toggle("nnmodes-collapsed", folded);
    fold.textContent = folded ? "▸" : "▾";
    fold.setAttribute("aria-expanded", String(!folded));
  };
  fold.addEventListener("click", () => setFolded(!root?.classList.contains("nnmodes-collapsed")));
  const evidence = (event) => {
    const span = event.detail?.span ?? null;
    if (span) setFolded(false);
    if (span) root.setAttribute("data-evidence", span.join("-"));
    else root.removeAttribute("data-evidence");
    onEvidence(span);
  };
  onRoot(el, rootClass, (found) => {
    root = found;
    root.classList.add("nnmodes-panel");
    root.addEventListener(EVIDENCE, evidence);
    fill();
  });
  const texts = ["change:title", "change:detail", "change:help", "change:reference", "change:empty"];
  for (const name of texts) model.on(name, fill);
  fill();
  return {
    el,
    frame(step, label = `step ${step}`) {
      stepLabel.textContent = label;
      counter.frame(step);
    },
    label(text) {
      stepLabel.textContent = text;
    },
    dispose() {
      for (const name of texts) model.off(name, fill);
      root?.removeEventListener(EVIDENCE, evidence);
    },
  };
}

// Count frames of `mark` (a widget reference in the trait `name`): each new y is one, labelled
// with the model's step; returns the cleanup.
export async function countFrames(model, name, header) {
  const mark = await referencedModel(model, name);
  const onData = () => header.frame(model.get("step"));
  mark.on("change:y", onData);
  if (model.get("step") > 0) onData(); // data that arrived before this view was made
  return () => mark.off("change:y", onData);
}

const widths = new WeakMap(); // element -> the last width it read

// The width a canvas panel draws at: its element's, else the last it had. While the theme
// changes the element reads no width, and a drawing at a guessed 700 px was shrunk to fit a
// 474 px panel, its labels tiny.
export function panelWidth(el) {
  if (el.clientWidth > 0) widths.set(el, el.clientWidth);
  return Math.max(200, Math.min(900, widths.get(el) ?? 700));
}

// Redraw a canvas panel when its width changes (a wider or narrower notebook, the dashboard's
// grid going to one or two columns) or the theme does (its text takes the theme's colour when
// drawn: after a switch to dark, a finished run's labels stayed dark grey on the dark page);
// returns { disconnect() }.
export function redrawOnResizeOrTheme(el, draw) {
  let width = el.clientWidth;
  const observer = new ResizeObserver(() => {
    if (el.clientWidth !== width) {
      width = el.clientWidth;
      draw();
    }
  });
  observer.observe(el);
  const offTheme = onThemeChange(draw);
  return { disconnect: () => { observer.disconnect(); offTheme(); } };
}
