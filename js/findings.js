import { EVIDENCE } from "./header.js";
import { reportView } from "./presence.js";
import { choose, moduleOf } from "./selection.js";

// The dashboard's findings strip (SPEC 15): one sentence per finding, newest first, with its
// severity and, once it ended, the step it ended at. A click selects the finding's layer in every
// panel (the shared selection) and brings its panel into view with the steps it held on marked;
// again, all layers and no mark. All of it here, in the browser: it works while training runs.

// Root element class of each panel a finding can point to.
export const PANEL_ROOTS = { trend: "nnmodes-trend", spectra: "nnmodes-spectrum",
  neurons: "nnmodes-neurons", basins: "nnmodes-basins" };

// The findings newest first (the kernel sends them in the order they started).
export function newestFirst(findings) {
  return [...findings].reverse();
}

// What a finding selects: the module of its layer among the panels' choices ("2.weight" -> "2",
// "features.3:relu#0" -> "features.3"); "" for a finding of the whole network.
export function findingModule(finding, layers) {
  return finding.layer ? moduleOf(finding.layer, layers) || finding.layer : "";
}

// One finding as a row (a button: focusable, and Enter clicks it).
export function findingRow(finding) {
  const row = document.createElement("button");
  row.type = "button";
  row.className = `nnmodes-finding nnmodes-${finding.severity}`;
  row.dataset.kind = finding.kind;
  row.dataset.layer = finding.layer;
  row.dataset.panel = finding.panel;
  const badge = document.createElement("span");
  badge.className = "nnmodes-severity";
  badge.textContent = finding.severity;
  const text = document.createElement("span");
  text.className = "nnmodes-finding-text";
  // (a phase change is a moment: it ends where it begins)
  text.textContent = finding.ended != null && finding.ended !== finding.step
    ? `${finding.message} · ended at step ${finding.ended}` : finding.message;
  row.append(badge, text);
  return row;
}

function keyOf(f) {
  return `${f.kind}|${f.layer}|${f.step}`;
}

export default {
  render({ model, el }) {
    const gone = reportView(model, el);
    el.classList.add("nnmodes-findings");
    const list = document.createElement("div");
    list.className = "nnmodes-findings-list";
    el.append(list);
    let active = null; // the key of the finding clicked last
    const draw = () => {
      const findings = newestFirst(model.get("findings"));
      if (!findings.length) {
        list.replaceChildren(Object.assign(document.createElement("div"),
          { className: "nnmodes-findings-none", textContent: "No findings so far." }));
      } else {
        list.replaceChildren(...findings.map((f) => {
          const row = findingRow(f);
          row.dataset.key = keyOf(f);
          row.classList.toggle("nnmodes-active", keyOf(f) === active);
          row.addEventListener("click", () => focus(f));
          return row;
        }));
      }
      el.setAttribute("data-count", String(findings.length));
    };
    // Select the finding's layer, bring its panel into view and mark its steps there.
    const focus = (finding) => {
      const again = keyOf(finding) === active;
      active = again ? null : keyOf(finding);
      choose(model, again ? "" : findingModule(finding, model.get("layers")));
      const dashboard = el.closest(".nnmodes-dashboard");
      for (const cls of Object.values(PANEL_ROOTS)) {   // one mark at a time
        const root = dashboard?.querySelector(`.${cls}`);
        const mine = cls === PANEL_ROOTS[finding.panel];
        root?.dispatchEvent(new CustomEvent(EVIDENCE, { detail: { span: mine && !again ? finding.span : null } }));
        if (mine && !again) root?.scrollIntoView({ block: "start", behavior: "instant" });
      }
      draw();
    };
    model.on("change:findings", draw);
    draw();
    return () => {
      model.off("change:findings", draw);
      gone();
    };
  },
};
