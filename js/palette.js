// Line colours (SPEC 16): every layer its own colour; once the layers are clustered by their RWC
// trends, each cluster is a family of hues and its layers are shades of it, dark (input side) to
// light (output side). Colours are made in CIE LCh, so that equal steps look equal, with a
// lightness range readable on the theme's background. nnmodes_widgets/colors.py makes the same
// colours for the exported figures (the light theme's).

import { inSelection } from "./selection.js";

export const FAMILIES = [255, 45, 135, 330, 195, 85, 295, 15]; // hue of each cluster's family
const CHROMA = 55;
// lightness of the darkest and lightest shade: each at least 3:1 against the theme's background
const TONES = { light: [30, 60], dark: [58, 88] };
const CLASS_TONE = { light: [48, 58], dark: [72, 60] }; // categorical: first round, then again
const SWEEP = 250; // degrees of hue the layers spread over when there is one family
const FAMILY_WIDTH = 60; // ... at most, when there are several
export const OUTSIDE = { light: "#8c8c8c", dark: "#9e9e9e" }; // a layer outside the partition
export const FOREGROUND = { light: "#333333", dark: "#e6e6e6" }; // "*": all layers together

const WHITE = [0.95047, 1.0, 1.08883]; // D65

function finv(t) {
  return t > 6 / 29 ? t ** 3 : 3 * (6 / 29) ** 2 * (t - 4 / 29);
}

function gamma(c) {
  return c <= 0.0031308 ? 12.92 * c : 1.055 * c ** (1 / 2.4) - 0.055;
}

// Linear-light sRGB of CIE L*, C*, h (degrees).
function linearRgb(l, c, h) {
  const rad = (h * Math.PI) / 180;
  const fy = (l + 16) / 116;
  const fx = fy + (c * Math.cos(rad)) / 500;
  const fz = fy - (c * Math.sin(rad)) / 200;
  const [x, y, z] = [finv(fx) * WHITE[0], finv(fy) * WHITE[1], finv(fz) * WHITE[2]];
  return [3.2404542 * x - 1.5371385 * y - 0.4985314 * z,
    -0.969266 * x + 1.8760108 * y + 0.041556 * z,
    0.0556434 * x - 0.2040259 * y + 1.0572252 * z];
}

// "#rrggbb" of L*, C*, h, the chroma lowered until the colour is inside sRGB.
export function lch(l, c, h) {
  let chroma = c;
  let rgb = linearRgb(l, chroma, h);
  while (chroma > 0 && rgb.some((v) => v < -1e-6 || v > 1 + 1e-6)) {
    chroma = Math.max(0, chroma - 1);
    rgb = linearRgb(l, chroma, h);
  }
  const hex = rgb.map((v) => Math.round(255 * gamma(Math.min(1, Math.max(0, v)))));
  return `#${hex.map((v) => v.toString(16).padStart(2, "0")).join("")}`;
}

function mod360(h) {
  return ((h % 360) + 360) % 360;
}

// Degrees of hue one family's shades spread over among `count` families: families stay apart.
export function familyWidth(count) {
  if (count <= 1) return SWEEP;
  const hues = FAMILIES.slice(0, Math.min(count, FAMILIES.length));
  let gap = 360;
  hues.forEach((a, i) => hues.slice(i + 1).forEach((b) => {
    const d = Math.abs(a - b) % 360;
    gap = Math.min(gap, d, 360 - d);
  }));
  return Math.min(FAMILY_WIDTH, 0.8 * gap);
}

// Colour of every key (RWC parameter names, input side first): {key: "#rrggbb"}. `clusters` maps
// key -> cluster number (null before the layers are clustered: all in one family); a key the
// partition leaves out is grey.
export function layerColors(keys, clusters, theme = "light") {
  const [lo, hi] = TONES[theme];
  const partitioned = clusters && Object.keys(clusters).length > 0;
  const families = new Map(); // cluster -> its keys, in order
  const out = {};
  for (const key of keys) {
    const c = partitioned ? clusters[key] : 0;
    if (c === undefined || c === null) {
      out[key] = OUTSIDE[theme];
      continue;
    }
    if (!families.has(c)) families.set(c, []);
    families.get(c).push(key);
  }
  const width = familyWidth(families.size);
  for (const [c, members] of families) {
    const base = FAMILIES[c % FAMILIES.length];
    members.forEach((key, j) => {
      const t = members.length > 1 ? j / (members.length - 1) : 0.5;
      out[key] = lch(lo + (hi - lo) * t, CHROMA, mod360(base + width * (0.5 - t)));
    });
  }
  return Object.fromEntries(keys.map((key) => [key, out[key]]));
}

// `n` categorical colours (classes, runs): one family's hue each, then again in another tone.
export function classColors(n, theme = "light") {
  return Array.from({ length: n }, (_, i) => {
    const round = Math.floor(i / FAMILIES.length) % 2;
    return lch(CLASS_TONE[theme][round], CHROMA, FAMILIES[i % FAMILIES.length]);
  });
}

// The colour of one line: its key's, or for a module name (the basins' keys) that of its first
// parameter; "*" (all layers) in the text colour.
export function lineColor(label, colors, theme = "light") {
  if (label === "*") return FOREGROUND[theme];
  if (colors[label]) return colors[label];
  const owned = Object.keys(colors).find((key) => key !== label && inSelection(key, label));
  return owned ? colors[owned] : OUTSIDE[theme];
}

// "dark" when the page's theme is (JupyterLab marks its body; elsewhere the background tells).
export function themeOf(el = document.body) {
  const light = document.body?.dataset?.jpThemeLight;
  if (light !== undefined) return light === "false" ? "dark" : "light";
  const bg = getComputedStyle(el).getPropertyValue("--jp-layout-color0").trim();
  const m = /^#([0-9a-f]{6})$/i.exec(bg);
  if (!m) return "light";
  const [r, g, b] = [0, 2, 4].map((i) => parseInt(m[1].slice(i, i + 2), 16) / 255);
  return 0.2126 * r + 0.7152 * g + 0.0722 * b < 0.5 ? "dark" : "light";
}

// Call `fn` whenever JupyterLab switches between a light and a dark theme; returns the cleanup.
export function onThemeChange(fn) {
  if (typeof MutationObserver === "undefined" || !document.body) return () => {};
  const observer = new MutationObserver(fn);
  observer.observe(document.body, { attributes: true, attributeFilter: ["data-jp-theme-light"] });
  return () => observer.disconnect();
}
