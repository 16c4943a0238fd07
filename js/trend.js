import { referencedModel, rootCounter } from "./root.js";

// Header of the trend panel. The plot itself is a bqplot Figure beside this view; its models are
// reached through widget references so that the log switch and frame counting happen here, in
// the browser, even while a training cell keeps the kernel busy.
export default {
  async render({ model, el }) {
    el.classList.add("nnmodes-trend-header");
    const title = document.createElement("span");
    title.className = "nnmodes-title";
    title.textContent = model.get("title");
    const toggle = document.createElement("label");
    const box = document.createElement("input");
    box.type = "checkbox";
    toggle.append(box, " log scale");
    const stepLabel = document.createElement("span");
    stepLabel.className = "nnmodes-step";
    el.append(title, toggle, stepLabel);

    const counter = rootCounter(el, "nnmodes-trend");
    const [lines, axis, linear, log] = await Promise.all(
      ["lines", "y_axis", "linear_scale", "log_scale"].map((n) => referencedModel(model, n)),
    );

    // Swapped on the client models only: the kernel keeps one state, the switch is view state.
    const applyScale = () => {
      const y = model.get("log_y") ? log : linear;
      box.checked = model.get("log_y");
      if (lines.get("scales").y !== y) {
        lines.set("scales", { ...lines.get("scales"), y });
        axis.set("scale", y);
      }
    };
    const onToggle = () => {
      model.set("log_y", box.checked);
      model.save_changes();
    };
    const onData = () => {
      const step = model.get("step");
      stepLabel.textContent = `step ${step}`;
      counter.frame(step);
    };
    box.addEventListener("change", onToggle);
    model.on("change:log_y", applyScale);
    lines.on("change:y", onData);
    applyScale();
    if (model.get("step") > 0) onData(); // data that arrived before this view was made
    return () => {
      model.off("change:log_y", applyScale);
      lines.off("change:y", onData);
    };
  },
};
