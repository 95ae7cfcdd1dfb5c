// Colour scales, one place for every view: a diverging map centred exactly at zero for signed maps
// (weights, contributions, differences), a sequential one for maps that are never negative
// (Grad-CAM, class activation maps), a categorical palette for class labels, and the colours of
// concepts. They come from d3-scale-chromatic (ColorBrewer RdBu and Reds, Tableau10).
import { scaleDiverging, scaleSequential } from "d3-scale";
import { interpolateReds, interpolateRdBu, interpolateSinebow, schemeTableau10 } from "d3-scale-chromatic";

// Positive weights (evidence for the class) red, negative blue, zero white. RdBu runs red -> blue,
// so the domain is flipped.
const diverging = scaleDiverging(interpolateRdBu).domain([1, 0, -1]);
// A map that is never negative: white at zero, dark red at its peak (the red end of the diverging
// scale, so "red = where the class draws its evidence" reads the same in every view).
const sequential = scaleSequential(interpolateReds).domain([0, 1]);

/** Whether a map's values are signed (centred at zero) or never negative (zero to peak). */
export type MapSign = "signed" | "positive";

function lut(css: (i: number) => string): Uint8ClampedArray {
  const out = new Uint8ClampedArray(256 * 3);
  for (let i = 0; i < 256; i++) {
    const m = /rgb\((\d+), (\d+), (\d+)\)/.exec(css(i))!;
    out.set([+m[1], +m[2], +m[3]], i * 3);
  }
  return out;
}

/** 256-entry RGB lookup table for values -1..1 (index = round((v + 1) * 127.5)). */
export const DIVERGING_LUT: Uint8ClampedArray = lut((i) => diverging(i / 127.5 - 1));
/** 256-entry RGB lookup table for values 0..1 (index = round(v * 255)). */
export const SEQUENTIAL_LUT: Uint8ClampedArray = lut((i) => sequential(i / 255));

export function divergingCss(v: number): string {
  return diverging(Math.max(-1, Math.min(1, v)));
}

export function sequentialCss(v: number): string {
  return sequential(Math.max(0, Math.min(1, v)));
}

/** CSS gradient stops of a map's colour scale, left (negative, or zero) to right (peak). */
export function scaleGradient(sign: MapSign): string {
  const stops = sign === "positive"
    ? [0, 0.25, 0.5, 0.75, 1].map((v) => `${sequentialCss(v)} ${v * 100}%`)
    : [-1, -0.5, 0, 0.5, 1].map((v) => `${divergingCss(v)} ${(v + 1) * 50}%`);
  return `linear-gradient(to right, ${stops.join(", ")})`;
}

/** Colour of class `k` among `n` classes (Tableau10, then evenly spaced hues). */
export function classColor(k: number, n: number): string {
  if (n <= schemeTableau10.length) return schemeTableau10[k % schemeTableau10.length];
  return interpolateSinebow(k / n);
}

export const SERIES = {
  a: "#2563eb",
  b: "#ea580c",
  fidelity: "#0f766e",
  r2: "#7c3aed",
  truth: "#16a34a",
  predicted: "#2563eb",
  deletion: "#dc2626",
  insertion: "#0891b2",
  random: "#6b7280",
  metric: "#111827",
};

/** The shading of low-trust steps in every chart, and its legend swatch. */
export const LOW_TRUST_BAND = "rgba(217, 119, 6, 0.16)";

/** Network Dissection's concept categories (Broden's), one colour each on every page that shows
 * them (the Dissection page, Summit's nodes); other categories are grey. */
const CATEGORY_COLORS: Record<string, string> = {
  color: "#e11d48", object: "#2563eb", part: "#7c3aed", material: "#a16207", scene: "#059669",
  texture: "#ea580c",
};
export const catColor = (c: string): string => CATEGORY_COLORS[c] ?? "#6b7280";

// Broden's colour concepts (and the demo's marker colours) by name, as people see them.
const NAMED: Record<string, string> = {
  red: "#dc2626", orange: "#f97316", yellow: "#facc15", green: "#16a34a", blue: "#2563eb",
  purple: "#7c3aed", pink: "#f472b6", brown: "#92400e", white: "#ffffff", grey: "#9ca3af",
  gray: "#9ca3af", black: "#111827",
};

/** The colour a concept is drawn in: the colour itself for a colour concept ("white" is white),
 * its category's colour otherwise. */
export function conceptColor(name: string, category: string): string {
  if (category === "color") {
    const key = name.toLowerCase().trim();
    if (NAMED[key]) return NAMED[key];
  }
  return catColor(category);
}

/** Black or white, whichever reads better on `background` (WCAG relative luminance). */
export function inkOn(background: string): string {
  const c = rgbOf(background);
  if (!c) return "#111827";
  const lin = (v: number) => {
    const s = v / 255;
    return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
  };
  const lum = 0.2126 * lin(c.r) + 0.7152 * lin(c.g) + 0.0722 * lin(c.b);
  // contrast with black (lum + 0.05) / 0.05 against white 1.05 / (lum + 0.05)
  return (lum + 0.05) / 0.05 >= 1.05 / (lum + 0.05) ? "#111827" : "#ffffff";
}

/** `#rrggbb` or `rgb(r, g, b)` (what d3-scale-chromatic returns) as numbers, else null. */
function rgbOf(css: string): { r: number; g: number; b: number } | null {
  const hex = /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(css.trim());
  if (hex) return { r: parseInt(hex[1], 16), g: parseInt(hex[2], 16), b: parseInt(hex[3], 16) };
  const rgb = /^rgb\((\d+),\s*(\d+),\s*(\d+)\)$/.exec(css.trim());
  return rgb ? { r: +rgb[1], g: +rgb[2], b: +rgb[3] } : null;
}
