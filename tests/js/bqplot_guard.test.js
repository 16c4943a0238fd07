import { describe, expect, it } from "vitest";
import { REDRAWS, guardRedraw, restyleGridOnTicks } from "../../js/bqplot_guard.js";

// A stand-in for bqplot's Axis view: redraw_axisline uses the d3 axis that render makes last.
function axisClass() {
  return class Axis {
    constructor() { this.redraws = 0; }
    create() { this.axis = { scale() {} }; this.g_axisline = {}; }
    redraw_axisline(animate) {
      this.axis.scale();     // throws before create(), as bqplot's does
      this.redraws += 1;
      return animate;
    }
  };
}

const AXIS = REDRAWS.find((r) => r.view === "Axis");

describe("guardRedraw", () => {
  it("skips the redraw of a view not drawn yet, and redraws once it is", () => {
    const Axis = axisClass();
    expect(() => new Axis().redraw_axisline()).toThrow(TypeError);
    expect(guardRedraw(Axis, AXIS.method, AXIS.drawn)).toBe(true);
    const view = new Axis();
    expect(view.redraw_axisline(true)).toBeUndefined();
    expect(view.redraws).toBe(0);
    view.create();
    expect(view.redraw_axisline(true)).toBe(true);
    expect(view.redraws).toBe(1);
  });

  it("wraps a method once, and refuses a class without it", () => {
    const Axis = axisClass();
    expect(guardRedraw(Axis, AXIS.method, AXIS.drawn)).toBe(true);
    const wrapped = Axis.prototype.redraw_axisline;
    expect(guardRedraw(Axis, AXIS.method, AXIS.drawn)).toBe(false);
    expect(Axis.prototype.redraw_axisline).toBe(wrapped);
    class Other {}
    expect(() => guardRedraw(Other, AXIS.method, AXIS.drawn)).toThrow(/has no redraw_axisline/);
    expect(() => guardRedraw(undefined, AXIS.method, AXIS.drawn)).toThrow(/has no/);
  });

  it("guards the Lines view's redraw until its first draw made the d3 line", () => {
    const spec = REDRAWS.find((r) => r.view === "Lines");
    class Lines {
      draw() { this.line = { x() {} }; this.area = {}; }
      update_line_xy() { this.line.x(); return "redrawn"; }
    }
    guardRedraw(Lines, spec.method, spec.drawn);
    const view = new Lines();
    expect(view.update_line_xy()).toBeUndefined();
    view.draw();
    expect(view.update_line_xy()).toBe("redrawn");
  });
});

describe("restyleGridOnTicks", () => {
  // A stand-in for bqplot's Axis view: a redraw for new tick values or labels leaves the grid
  // as it was
  class Axis {
    constructor() { this.calls = []; }
    draw(connected) { this.axis = {}; this.g_axisline = { node: () => ({ isConnected: connected }) }; }
    set_tick_values() { this.calls.push("values"); }
    tickformat_changed() { this.calls.push("labels"); return "redrawn"; }
    update_grid_lines() { this.calls.push("grid"); }
  }

  it("styles the grid again after the ticks of a drawn axis change, and only then", () => {
    expect(restyleGridOnTicks(Axis)).toBe(true);
    const view = new Axis();
    expect(view.tickformat_changed()).toBe("redrawn");     // not drawn yet
    view.draw(false);                                       // drawn, not in the page (update_display)
    view.set_tick_values();
    expect(view.calls).toEqual(["labels", "values"]);
    view.draw(true);
    view.tickformat_changed();
    view.set_tick_values();
    expect(view.calls).toEqual(["labels", "values", "labels", "grid", "values", "grid"]);
  });

  it("wraps once, and refuses an Axis without the methods", () => {
    const wrapped = Axis.prototype.set_tick_values;
    expect(restyleGridOnTicks(Axis)).toBe(false);
    expect(Axis.prototype.set_tick_values).toBe(wrapped);
    class Other { tickformat_changed() {} set_tick_values() {} }
    expect(() => restyleGridOnTicks(Other)).toThrow(/has no update_grid_lines\(\)/);
    expect(() => restyleGridOnTicks(undefined)).toThrow(/has no set_tick_values/);
  });
});
