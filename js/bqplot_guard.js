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

const drawnAtOnce = new WeakSet();   // the Lines views whose update_line_xy was replaced

// bqplot's Lines redraw their paths through d3 transitions even when nothing animates (a
// figure's animation_duration 0, every figure here): each redraw builds a string interpolator
// between every curve's old and new path (regular expressions over both strings) and lands a
// frame later. A live trend's frame took Chromium ~35 ms on two cores and most of the page's
// garbage, and its frames starved the worker's runs on a small ResNet in JupyterLab. Without a
// duration the paths, areas and labels are set at once (a transition still under way, from an
// animated redraw, is stopped first so it cannot overwrite them); an animated redraw is
// bqplot's own. False if the method was replaced already.
export function drawLinesAtOnce(Lines) {
  const update = Lines?.prototype?.update_line_xy;
  if (typeof update !== "function") throw new Error(`bqplot view ${Lines?.name} has no update_line_xy()`);
  if (drawnAtOnce.has(Lines)) return false;
  const atOnce = function (animate) {
    if (animate === true && this.parent.model.get("animation_duration") > 0) {
      return update.call(this, animate);
    }
    const { x, y } = this.scales;
    const px = (d) => x.scale(d.x) + x.offset;
    const py = (d) => y.scale(d.y) + y.offset;
    this.line.x(px).y(py);
    this.area.x(px).y1(py);
    const fill = this.model.get("fill");
    if (fill === "bottom") this.area.y0(this.parent.plotareaHeight);
    else if (fill === "top") this.area.y0(0);
    else if (fill === "between") this.area.y0((d) => y.scale(d.y0) + y.offset);
    const curves = this.d3el.selectAll(".curve");
    const set = (part, name, value) => {
      const parts = curves.select(part);
      parts.interrupt?.("update_line_xy");
      parts.attr(name, value);
    };
    set(".line", "d", (d) => this.line(d.values) + this.path_closure());
    set(".area", "d", (d) => this.area(d.values));
    set(".curve_label", "transform", (d) => {
      const last = d.values[d.values.length - 1];
      return `translate(${x.scale(last.x)},${y.scale(last.y)})`;
    });
    this.update_dots_xy(animate);
    const first = this.model.mark_data.length > 0 ? this.model.mark_data[0].values : [];
    this.xPixels = first.map(px);
    this.yPixels = first.map(py);
    this.pixelCoords = first.map((d) => [px(d), py(d)]);
  };
  drawnAtOnce.add(Lines);
  Lines.prototype.update_line_xy = atOnce;
  return true;
}

const restyled = new WeakSet();   // the Axis classes whose tick changes restyle the grid
const TICK_REDRAWS = ["set_tick_values", "tickformat_changed"];

// bqplot's Axis redraws its ticks when their values or labels change (set_tick_values,
// tickformat_changed: the browser's ticks, js/ticks.js, set both) but styles the grid lines
// only in update_grid_lines, which a domain change calls: the ticks that entered stayed solid
// lines among the dashed ones once the live ranges held still (widgets/scales.py settle_range).
// After either redraw of a drawn axis its grid is styled again. False if wrapped already.
export function restyleGridOnTicks(Axis) {
  const proto = Axis?.prototype;
  const missing = [...TICK_REDRAWS, "update_grid_lines"].filter((m) => typeof proto?.[m] !== "function");
  if (missing.length) throw new Error(`bqplot view ${Axis?.name} has no ${missing.join("(), ")}()`);
  if (restyled.has(Axis)) return false;
  for (const method of TICK_REDRAWS) {
    const redraw = proto[method];
    proto[method] = function (...args) {
      const out = redraw.apply(this, args);
      if (this.axis && this.g_axisline?.node?.()?.isConnected) this.update_grid_lines();
      return out;
    };
  }
  restyled.add(Axis);
  return true;
}

// Guard the views of the bqplot that draws the model `model.get(ref)` refers to (a mark of the
// panel's figures), and let its Lines redraw at once. Called when the panel's model is made,
// before any view of its figures.
export async function guardBqplotOf(model, ref) {
  const bqplotModel = await referencedModel(model, ref);
  const load = (view) => model.widget_manager.loadViewClass(
    view, bqplotModel.get("_view_module"), bqplotModel.get("_view_module_version"));
  drawLinesAtOnce(await load("Lines"));     // first: the guard wraps what it replaced
  restyleGridOnTicks(await load("Axis"));
  await Promise.all(REDRAWS.map(async ({ view, method, drawn }) => {
    guardRedraw(await load(view), method, drawn);
  }));
}
