import { coalesce, onRoot, rootCounter } from "./root.js";
import { agesText, statusText } from "./format.js";
import { reportView } from "./presence.js";

const FIELDS = ["step", "steps_per_second", "slowdown", "budget", "samples", "every", "own_share",
  "every_within_budget", "errors", "last_error", "nonfinite", "detached", "replaced_at"];
// The dashboard's panels, as the ages name them (root element class -> name)
export const PANELS = [["nnmodes-trend", "trend"], ["nnmodes-spectrum", "spectra"],
  ["nnmodes-neurons", "neurons"], ["nnmodes-basins", "basins"],
  ["nnmodes-characteristic-maps", "maps"], ["nnmodes-radiograph", "radiographs"]];
const TICK = 1000; // ms between redraws of the ages

// The panel a root element is, by its classes (the characteristic maps are radiographs too).
export function panelName(classList) {
  return PANELS.find(([cls]) => classList.contains(cls))?.[1] ?? null;
}

// The dashboard's status header: step, speed, the measured slowdown against the budget, samples,
// faults (the kernel's numbers); and how long ago each panel in sight got its newest frame,
// counted here from the frames that reach the browser (a panel's data-frames), so the ages keep
// counting while the kernel is busy. A panel out of sight gets no frames (js/presence.js): its
// age would only say so.
export default {
  render({ model, el }) {
    const gone = reportView(model, el);
    el.classList.add("nnmodes-status");
    const line = Object.assign(document.createElement("div"), { className: "nnmodes-status-line" });
    const ages = Object.assign(document.createElement("div"), { className: "nnmodes-ages" });
    el.append(line, ages);
    const counter = rootCounter(el, "nnmodes-dashboard");
    const stamps = new Map(); // panel name -> time its newest frame came (ms)
    const roots = new Map(); // panel name -> its root element
    const inSight = (name) => roots.get(name)?.getAttribute("data-in-sight") !== "0";
    const drawAges = () => {
      const live = !model.get("detached");
      const order = PANELS.map(([, name]) => name).filter((name) => stamps.has(name) && inSight(name));
      const text = live && order.length
        ? `updated ${agesText(order.map((name) => [name, stamps.get(name)]), Date.now())}` : "";
      // an unchanged text is not set again: each setting lays the notebook out anew
      if (ages.textContent !== text) ages.textContent = text;
    };
    const draw = coalesce(() => {
      const state = Object.fromEntries(FIELDS.map((f) => [f, model.get(f)]));
      line.textContent = statusText(state);
      el.classList.toggle("nnmodes-status-alert", state.errors > 0 || state.nonfinite.length > 0);
      drawAges();
      counter.frame(state.step);
    });
    let observer = null;
    onRoot(el, "nnmodes-dashboard", (dashboard) => {
      observer = new MutationObserver((records) => {
        for (const r of records) {
          const name = r.target !== dashboard && panelName(r.target.classList);
          if (!name) continue;
          roots.set(name, r.target);
          const frames = r.target.getAttribute("data-frames");
          if (r.attributeName === "data-frames" && Number(frames) > 0 && frames !== r.oldValue) {
            stamps.set(name, Date.now());
          }
        }
        drawAges();
      });
      observer.observe(dashboard, { subtree: true, attributes: true, attributeOldValue: true,
        attributeFilter: ["data-frames", "data-in-sight"] });
    });
    const timer = setInterval(drawAges, TICK);
    for (const f of FIELDS) model.on(`change:${f}`, draw);
    draw();
    return () => {
      clearInterval(timer);
      observer?.disconnect();
      for (const f of FIELDS) model.off(`change:${f}`, draw);
      gone();
    };
  },
};
