import { describe, expect, it } from "vitest";
import { markColors } from "../../js/figures.js";
import { FAMILIES, classColors, layerColors, lineColor } from "../../js/palette.js";

// sRGB hex -> CIE L*, hue (degrees) and relative luminance, to check what the palette promises.
function lab(hex) {
  const lin = [1, 3, 5].map((i) => {
    const c = parseInt(hex.slice(i, i + 2), 16) / 255;
    return c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  });
  const [r, g, b] = lin;
  const xyz = [0.4124564 * r + 0.3575761 * g + 0.1804375 * b,
    0.2126729 * r + 0.7151522 * g + 0.072175 * b,
    0.0193339 * r + 0.119192 * g + 0.9503041 * b];
  const f = (t) => (t > (6 / 29) ** 3 ? Math.cbrt(t) : t / (3 * (6 / 29) ** 2) + 4 / 29);
  const [fx, fy, fz] = [f(xyz[0] / 0.95047), f(xyz[1]), f(xyz[2] / 1.08883)];
  const a = 500 * (fx - fy);
  const bb = 200 * (fy - fz);
  return { L: 116 * fy - 16, hue: ((Math.atan2(bb, a) * 180) / Math.PI + 360) % 360, Y: xyz[1] };
}

const hueGap = (a, b) => Math.min(Math.abs(a - b) % 360, 360 - (Math.abs(a - b) % 360));
const contrast = (y1, y2) => (Math.max(y1, y2) + 0.05) / (Math.min(y1, y2) + 0.05);
const BACKGROUND = { light: lab("#ffffff").Y, dark: lab("#111111").Y }; // --jp-layout-color0

function keys(n) {
  return Array.from({ length: n }, (_, i) => `layer${i}.weight`);
}

describe("every layer its own colour", () => {
  it("gives each of up to 60 layers a distinct colour, before and after clustering", () => {
    for (const theme of ["light", "dark"]) {
      for (const n of [1, 2, 3, 7, 21, 60]) {
        const names = keys(n);
        const plain = Object.values(layerColors(names, null, theme));
        expect(new Set(plain).size).toBe(n);
        for (const k of [1, 2, 3, 5, 8]) {
          const clusters = Object.fromEntries(names.map((name, i) => [name, Math.floor((i * k) / n)]));
          expect(new Set(Object.values(layerColors(names, clusters, theme))).size).toBe(n);
        }
      }
    }
  });

  it("tells apart the quickstart's three layers of one cluster (they were one blue)", () => {
    const names = ["1.weight", "3.weight", "5.weight"];
    const colors = layerColors(names, { "1.weight": 0, "3.weight": 0, "5.weight": 0 });
    const [a, b, c] = names.map((name) => lab(colors[name]));
    for (const [p, q] of [[a, b], [b, c], [a, c]]) {
      expect(Math.abs(p.L - q.L) + hueGap(p.hue, q.hue) / 3).toBeGreaterThan(10);
    }
  });

  it("makes each cluster a family of hues: a layer is nearest its own family", () => {
    const names = keys(21); // a ResNet-18: 21 layers in 3 clusters
    const clusters = Object.fromEntries(names.map((name, i) => [name, i % 3]));
    const colors = layerColors(names, clusters);
    for (const name of names) {
      const { hue } = lab(colors[name]);
      const gaps = FAMILIES.slice(0, 3).map((h) => hueGap(hue, h));
      expect(gaps.indexOf(Math.min(...gaps))).toBe(clusters[name]);
    }
    // shades run dark (input side) to light within a family
    const family = names.filter((name) => clusters[name] === 1).map((name) => lab(colors[name]).L);
    expect(family).toEqual([...family].sort((x, y) => x - y));
  });

  it("keeps every line readable on the theme's background (3:1)", () => {
    for (const theme of ["light", "dark"]) {
      const names = keys(40);
      const clusters = Object.fromEntries(names.map((name, i) => [name, i % 4]));
      const all = [...Object.values(layerColors(names, clusters, theme)),
        ...Object.values(layerColors(names, null, theme)), ...classColors(16, theme)];
      for (const hex of all) expect(contrast(lab(hex).Y, BACKGROUND[theme])).toBeGreaterThanOrEqual(3);
    }
  });

  it("colours a module's line as its first parameter, and a layer left out in grey", () => {
    const colors = layerColors(["0.weight", "2.weight"], { "0.weight": 0 });
    expect(lineColor("0", colors)).toBe(colors["0.weight"]);
    expect(lineColor("2.weight", colors)).toBe(colors["2.weight"]);
    expect(colors["2.weight"]).toMatch(/^#8c8c8c$/); // not in the partition
    expect(lineColor("*", colors, "dark")).not.toBe(lineColor("*", colors, "light"));
  });

  it("colours a mark's lines by layer, or by class for classes", () => {
    const palette = { keys: ["0.weight", "2.weight"], clusters: null };
    const byLayer = markColors(["2", "0", "*"], "layers", palette, "light");
    expect(byLayer[0]).toBe(layerColors(palette.keys, null)["2.weight"]);
    expect(new Set(byLayer).size).toBe(3);
    expect(markColors(["class 0", "class 1"], "classes", palette, "dark")).toEqual(classColors(2, "dark"));
  });
});
