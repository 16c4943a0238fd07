import { countFrames, panelHeader } from "./header.js";
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
    let lines = null;
    const highlight = () => {
      el.closest(".nnmodes-trend")?.setAttribute("data-selected", model.get("selected"));
      if (lines) highlightLines(lines, model.get("selected"));
    };
    const picker = layerPicker(model, highlight);
    const { onData } = panelHeader(model, el, "nnmodes-trend", [toggle, picker.el]);
    let linearAxis; let logAxis; let linear; let log;
    [lines, linearAxis, logAxis, linear, log] = await Promise.all(
      ["lines", "linear_axis", "log_axis", "linear_scale", "log_scale"].map((n) =>
        referencedModel(model, n),
      ),
    );

    // Set on the client models only, never saved: the switch is view state (log_y), and the
    // kernel's copy of the plot stays as it made it.
    const applyScale = () => {
      const isLog = model.get("log_y");
      box.checked = isLog;
      const y = isLog ? log : linear;
      if (lines.get("scales").y !== y) lines.set("scales", { ...lines.get("scales"), y });
      linearAxis.set("visible", !isLog);
      logAxis.set("visible", isLog);
    };
    const onToggle = () => {
      model.set("log_y", box.checked);
      model.save_changes();
    };
    box.addEventListener("change", onToggle);
    model.on("change:log_y", applyScale);
    lines.on("change:labels", highlight);
    applyScale();
    highlight();
    const stopCounting = await countFrames(model, "lines", onData);
    return () => {
      model.off("change:log_y", applyScale);
      lines.off("change:labels", highlight);
      picker.dispose();
      stopCounting();
    };
  },
};
