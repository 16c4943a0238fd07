import { coalesce, rootCounter } from "./root.js";
import { statusText } from "./format.js";
import { reportView } from "./presence.js";

const FIELDS = ["step", "steps_per_second", "slowdown", "budget", "samples", "every", "own_share",
  "every_within_budget", "dropped", "errors", "last_error", "nonfinite", "detached", "replaced_at"];

export default {
  render({ model, el }) {
    const gone = reportView(model);
    el.classList.add("nnmodes-status");
    const counter = rootCounter(el, "nnmodes-dashboard");
    const draw = coalesce(() => {
      const state = Object.fromEntries(FIELDS.map((f) => [f, model.get(f)]));
      el.textContent = statusText(state);
      el.classList.toggle("nnmodes-status-alert", state.errors > 0 || state.nonfinite.length > 0);
      counter.frame(state.step);
    });
    for (const f of FIELDS) model.on(`change:${f}`, draw);
    draw();
    return () => {
      for (const f of FIELDS) model.off(`change:${f}`, draw);
      gone();
    };
  },
};
