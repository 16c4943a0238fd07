import { referencedModel } from "./root.js";

// bqplot (0.13, front end 0.6) listens to a scale's "domain_changed" as soon as a view has the
// scale's view, but makes what the listener redraws only later in render:
// - Axis: redraw_axisline uses the d3 axis made after the offset scale is awaited too;
// - Lines: update_line_xy uses the d3 line made by the first draw().
// A domain change in between, such as the kernel's first data reaching a figure that is still
// rendering, throws inside the widget manager's set_state: "Error setting state: Cannot read
// properties of undefined (reading 'scale')" (Axis) or "(reading 'x')" (Lines) in the console.
// Until the view has drawn there is nothing to redraw, and render draws from the domain current
// then, so the guard skips those calls.
export const REDRAWS = [
  { view: "Axis", method: "redraw_axisline", drawn: ["axis", "g_axisline"] },
  { view: "Lines", method: "update_line_xy", drawn: ["line", "area"] },
];

const guarded = new WeakSet();   // the methods already wrapped

// Wraps View.prototype[method]; false if it was wrapped already. Throws if there is no such
// method: a bqplot that changed its views needs this guard looked at again.
export function guardRedraw(View, method, drawn) {
  const redraw = View?.prototype?.[method];
  if (typeof redraw !== "function") throw new Error(`bqplot view ${View?.name} has no ${method}()`);
  if (guarded.has(redraw)) return false;
  const proto = View.prototype;
  const guard = function (...args) {
    if (drawn.some((name) => this[name] === undefined)) return undefined;
    return redraw.apply(this, args);
  };
  guarded.add(guard);
  proto[method] = guard;
  return true;
}

// Guard the views of the bqplot that draws the model `model.get(ref)` refers to (a mark of the
// panel's figures). Called when the panel's model is made, before any view of its figures.
export async function guardBqplotOf(model, ref) {
  const bqplotModel = await referencedModel(model, ref);
  await Promise.all(REDRAWS.map(async ({ view, method, drawn }) => {
    const View = await model.widget_manager.loadViewClass(
      view, bqplotModel.get("_view_module"), bqplotModel.get("_view_module_version"));
    guardRedraw(View, method, drawn);
  }));
}
