import { panelHeader } from "./header.js";
import { referencedModel } from "./root.js";
import { highlightLines, layerPicker } from "./selection.js";

// Header of the trend panel. The plot itself is a bqplot Figure beside this view; its models are
// reached through widget references so that the log switch, the layer highlight and frame
// counting happen here, in the browser, even while a training cell keeps the kernel busy.
export default {
  async render({ model, el }) {
    const toggle = document.createElement("label");
    const box = document.createElement("input");
    box.type = "checkbox";
    toggle.append(box, " log scale");
    let marks = [];
    const highlight = () => {
      el.closest(".nnmodes-trend")?.setAttribute("data-selected", model.get("selected"));
      for (const mark of marks) highlightLines(mark, model.get("selected"));
    };
    const picker = layerPicker(model, highlight);
    const { onData } = panelHeader(model, el, "nnmodes-trend", [toggle, picker.el]);
    const [lines, logLines, linearAxis, logAxis] = await Promise.all(
      ["lines", "log_lines", "linear_axis", "log_axis"].map((n) => referencedModel(model, n)),
    );
    marks = [lines, logLines];

    // Set on the client models only, never saved: the switch is view state (log_y), and the
    // kernel's copy of the plot stays as it made it. Each scale has its own lines and axis.
    const applyScale = () => {
      const isLog = model.get("log_y");
      box.checked = isLog;
      for (const [mark, axis, shown] of [[lines, linearAxis, !isLog], [logLines, logAxis, isLog]]) {
        mark.set("visible", shown);
        mark.set("display_legend", shown && model.get("legend"));
        axis.set("visible", shown);
      }
    };
    const onToggle = () => {
      model.set("log_y", box.checked);
      model.save_changes();
    };
    box.addEventListener("change", onToggle);
    model.on("change:log_y", applyScale);
    model.on("change:legend", applyScale);
    for (const mark of marks) mark.on("change:labels", highlight);
    applyScale();
    highlight();
    // A frame is new data on the lines on screen (the kernel refreshes the others less often).
    const counters = marks.map((mark) => () => { if (mark.get("visible")) onData(); });
    marks.forEach((mark, i) => mark.on("change:y", counters[i]));
    if (model.get("step") > 0) onData(); // data that arrived before this view was made
    return () => {
      marks.forEach((mark, i) => mark.off("change:y", counters[i]));
      model.off("change:log_y", applyScale);
      model.off("change:legend", applyScale);
      for (const mark of marks) mark.off("change:labels", highlight);
      picker.dispose();
    };
  },
};
