import { guardBqplotOf } from "./bqplot_guard.js";
import { initializeFigures, markEvidence } from "./figures.js";
import { panelHeader } from "./header.js";
import { reportView } from "./presence.js";
import { referencedModel } from "./root.js";
import { choose, highlightOnLabels, layerPicker, legendEntries } from "./selection.js";

// The legend under the trend's header: one entry per line, in the line's colour, wrapping into
// as many rows as it needs (a GPT's or a ResNet's dozens of layers scroll). A click selects the
// entry's layer in every panel, as the picker does; again, all layers.
export function renderLegend(container, entries) {
  container.replaceChildren(...entries.map((entry) => {
    const item = document.createElement("button");
    item.type = "button";
    item.className = entry.dim ? "nnmodes-legend-item nnmodes-dim" : "nnmodes-legend-item";
    item.dataset.label = entry.label;
    item.dataset.layer = entry.layer;
    item.dataset.color = entry.color;
    item.title = entry.layer ? `${entry.label} (click: select layer ${entry.layer} in every panel)` : entry.label;
    const key = document.createElement("span");
    key.className = "nnmodes-key";
    key.style.background = entry.color;
    const name = document.createElement("span");
    name.className = "nnmodes-legend-name";
    name.textContent = entry.label;
    item.append(key, name);
    return item;
  }));
}

// Header of the trend panel. The plot itself is a bqplot Figure beside this view; its models are
// reached through widget references so that the log switch, the layer highlight, the legend and
// frame counting happen here, in the browser, even while a training cell keeps the kernel busy.
export default {
  initialize({ model }) {
    guardBqplotOf(model, "lines").catch((e) => console.warn("nnmodes_widgets: bqplot redraw guard not installed:", e));
    return initializeFigures(model);
  },
  async render({ model, el }) {
    const gone = reportView(model, el, "nnmodes-trend");
    const toggle = document.createElement("label");
    toggle.className = "nnmodes-switch";
    const box = document.createElement("input");
    box.type = "checkbox";
    toggle.append(box, " log scale");
    const legend = document.createElement("div");
    legend.className = "nnmodes-legend";
    let lines = null;
    let marks = null;
    const drawLegend = () => {
      if (!lines) return;
      renderLegend(legend, legendEntries(lines.get("labels") ?? [], lines.get("colors") ?? [],
        model.get("layers"), model.get("selected")));
    };
    const highlight = () => {
      el.closest(".nnmodes-trend")?.setAttribute("data-selected", model.get("selected"));
      marks?.update();
      drawLegend();
    };
    const picker = layerPicker(model, highlight);
    const header = panelHeader(model, "nnmodes-trend", [toggle, picker.el],
      { onEvidence: (span) => markEvidence(model, span) });
    el.append(header.el, legend);
    const [linear, logLines, linearAxis, logAxis] = await Promise.all(
      ["lines", "log_lines", "linear_axis", "log_axis"].map((n) => referencedModel(model, n)),
    );
    lines = linear;
    marks = highlightOnLabels([linear, logLines], () => model.get("selected"));
    legend.addEventListener("click", (event) => {
      const item = event.target.closest?.(".nnmodes-legend-item");
      const layer = item?.dataset.layer;
      if (layer) choose(model, model.get("selected") === layer ? "" : layer);
    });
    // the linear lines hold every layer (the log ones leave out what a log axis cannot place)
    const onLines = () => queueMicrotask(drawLegend); // after the kernel's message is applied
    for (const event of ["change:labels", "change:colors"]) linear.on(event, onLines);
    model.on("change:layers", drawLegend);

    // Set on the client models only, never saved: the switch is view state (log_y), and the
    // kernel's copy of the plot stays as it made it. Each scale has its own lines and axis.
    const applyScale = () => {
      const isLog = model.get("log_y");
      box.checked = isLog;
      for (const [mark, axis, shown] of [[linear, linearAxis, !isLog], [logLines, logAxis, isLog]]) {
        mark.set("visible", shown);
        axis.set("visible", shown);
      }
    };
    const onToggle = () => {
      model.set("log_y", box.checked);
      model.save_changes();
    };
    box.addEventListener("change", onToggle);
    model.on("change:log_y", applyScale);
    applyScale();
    highlight();
    // A frame is new data on the lines on screen (the kernel refreshes the others less often).
    const lineMarks = [linear, logLines];
    const counters = lineMarks.map((mark) => () => { if (mark.get("visible")) header.frame(model.get("step")); });
    lineMarks.forEach((mark, i) => mark.on("change:y", counters[i]));
    if (model.get("step") > 0) header.frame(model.get("step")); // data that came before this view
    return () => {
      lineMarks.forEach((mark, i) => mark.off("change:y", counters[i]));
      for (const event of ["change:labels", "change:colors"]) linear.off(event, onLines);
      model.off("change:layers", drawLegend);
      model.off("change:log_y", applyScale);
      marks.dispose();
      picker.dispose();
      header.dispose();
      gone();
    };
  },
};
