import { referencedModel, rootCounter } from "./root.js";

// The header row of a bqplot-based panel: title, extra controls, and the step of the frame on
// screen. A frame is counted when the panel's main mark receives new data in the browser.
export function panelHeader(model, el, rootClass, controls = []) {
  el.classList.add("nnmodes-trend-header");
  const title = document.createElement("span");
  title.className = "nnmodes-title";
  title.textContent = model.get("title");
  const stepLabel = document.createElement("span");
  stepLabel.className = "nnmodes-step";
  el.append(title, ...controls, stepLabel);
  const counter = rootCounter(el, rootClass);
  const onData = () => {
    const step = model.get("step");
    stepLabel.textContent = `step ${step}`;
    counter.frame(step);
  };
  return { onData };
}

// Count frames of `mark` (a widget reference in the trait `name`); returns the cleanup.
export async function countFrames(model, name, onData) {
  const mark = await referencedModel(model, name);
  mark.on("change:y", onData);
  if (model.get("step") > 0) onData(); // data that arrived before this view was made
  return () => mark.off("change:y", onData);
}
