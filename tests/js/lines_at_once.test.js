import { describe, expect, it } from "vitest";
import { area as d3area, line as d3line } from "d3-shape";
import { drawLinesAtOnce } from "../../js/bqplot_guard.js";

// A d3 selection of the curves' parts, as far as the redraw uses it: the value each attribute
// got for each curve, and the named transitions interrupted before it.
function curvesOf(data, log) {
  return {
    select(part) {
      return {
        interrupt(name) { log.push(["interrupt", part, name]); return this; },
        attr(name, value) {
          log.push(["attr", part, name, data.map((d, i) => value(d, i))]);
          return this;
        },
      };
    },
  };
}

// A stand-in for bqplot 0.13's Lines view: its scales, d3 line and area, model and figure; its
// own update_line_xy records that it ran (bqplot's, which goes through transitions).
function linesClass() {
  return class Lines {
    constructor({ duration = 0, fill = "none", data }) {
      this.log = [];
      this.scales = { x: { scale: (v) => 10 * v, offset: 1 }, y: { scale: (v) => 100 - v, offset: 2 } };
      this.line = d3line();
      this.area = d3area();
      this.parent = { model: { get: (k) => (k === "animation_duration" ? duration : undefined) },
        plotareaHeight: 300 };
      this.model = { get: (k) => (k === "fill" ? fill : undefined), mark_data: data };
      this.d3el = { selectAll: (sel) => (sel === ".curve" ? curvesOf(data, this.log) : null) };
    }
    path_closure() { return ""; }
    update_dots_xy(animate) { this.log.push(["dots", animate]); }
    update_line_xy(animate) { this.log.push(["bqplot", animate]); }
  };
}

const DATA = [
  { name: "a", values: [{ x: 0, y: 5 }, { x: 1, y: 7 }, { x: 2, y: 6 }] },
  { name: "b", values: [{ x: 0, y: 1 }, { x: 2, y: 3 }] },
];

describe("drawLinesAtOnce", () => {
  it("sets every curve's path, area and label at once, stopping a transition under way first", () => {
    const Lines = linesClass();
    expect(drawLinesAtOnce(Lines)).toBe(true);
    const view = new Lines({ data: DATA });
    view.update_line_xy(false);
    const byPart = Object.fromEntries(view.log.filter((e) => e[0] === "attr").map((e) => [e[1], e[3]]));
    // pixels: x -> 10x + 1, y -> 100 - y + 2
    expect(byPart[".line"]).toEqual(["M1,97L11,95L21,96", "M1,101L21,99"]);
    expect(byPart[".curve_label"]).toEqual(["translate(20,94)", "translate(20,97)"]);
    expect(byPart[".area"]).toHaveLength(2);
    for (const part of [".line", ".area", ".curve_label"]) {
      const interrupted = view.log.findIndex((e) => e[0] === "interrupt" && e[1] === part);
      const set = view.log.findIndex((e) => e[0] === "attr" && e[1] === part);
      expect(view.log[interrupted][2]).toBe("update_line_xy");
      expect(interrupted).toBeGreaterThanOrEqual(0);
      expect(interrupted).toBeLessThan(set);
    }
    expect(view.log).toContainEqual(["dots", false]);
    expect(view.log.some((e) => e[0] === "bqplot")).toBe(false);
    expect(view.xPixels).toEqual([1, 11, 21]);
    expect(view.yPixels).toEqual([97, 95, 96]);
    expect(view.pixelCoords).toEqual([[1, 97], [11, 95], [21, 96]]);
  });

  it("draws at once an animated redraw of a figure without a duration, and leaves one with a duration to bqplot", () => {
    const Lines = linesClass();
    drawLinesAtOnce(Lines);
    const still = new Lines({ duration: 0, data: DATA });
    still.update_line_xy(true);
    expect(still.log.some((e) => e[0] === "bqplot")).toBe(false);
    expect(still.log.some((e) => e[0] === "attr" && e[1] === ".line")).toBe(true);
    const animated = new Lines({ duration: 300, data: DATA });
    animated.update_line_xy(true);
    expect(animated.log).toEqual([["bqplot", true]]);
    const notAsked = new Lines({ duration: 300, data: DATA });
    notAsked.update_line_xy(false);
    expect(notAsked.log.some((e) => e[0] === "bqplot")).toBe(false);
  });

  it("closes a filled area where bqplot does: the plot's bottom, its top", () => {
    const Lines = linesClass();
    drawLinesAtOnce(Lines);
    const areaOf = (fill) => {
      const view = new Lines({ fill, data: [DATA[1]] });
      view.update_line_xy(false);
      return view.log.find((e) => e[0] === "attr" && e[1] === ".area")[3][0];
    };
    expect(areaOf("bottom")).toBe("M1,101L21,99L21,300L1,300Z");
    expect(areaOf("top")).toBe("M1,101L21,99L21,0L1,0Z");
  });

  it("replaces a class's redraw once, refuses a class without it, and has no pixels without curves", () => {
    const Lines = linesClass();
    expect(drawLinesAtOnce(Lines)).toBe(true);
    const replaced = Lines.prototype.update_line_xy;
    expect(drawLinesAtOnce(Lines)).toBe(false);
    expect(Lines.prototype.update_line_xy).toBe(replaced);
    class Other {}
    expect(() => drawLinesAtOnce(Other)).toThrow(/has no update_line_xy/);
    const empty = new Lines({ data: [] });
    empty.update_line_xy(false);
    expect(empty.xPixels).toEqual([]);
    expect(empty.pixelCoords).toEqual([]);
  });
});
