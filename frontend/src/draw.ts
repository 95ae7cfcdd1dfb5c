// Canvas drawing of maps and images, shared by every view. Maps are drawn at their native
// resolution into an off-screen canvas and scaled up by the browser: pixel-crisp (nearest
// neighbour) when the input is small (<= 32 px, where a pixel is a feature: the demo's 2x2 marker
// must stay a square), smoothed otherwise. A map's sign picks its colour scale: signed maps
// (weights, contributions, differences) are blue-white-red centred at zero, maps that are never
// negative (Grad-CAM) white-to-red from zero to their peak.
import { decodeImage, decodeMap, type Map2D } from "./codec";
import { DIVERGING_LUT, SEQUENTIAL_LUT, scaleGradient, type MapSign } from "./colors";
import { fmtScale, h } from "./dom";
import type { EncodedImg, EncodedMap } from "./types";

/** Inputs at most this many pixels wide are drawn pixel-crisp. */
export const CRISP_MAX = 32;

function small(w: number, hgt: number): [HTMLCanvasElement, CanvasRenderingContext2D] {
  const c = document.createElement("canvas");
  c.width = w;
  c.height = hgt;
  return [c, c.getContext("2d")!];
}

/** Opacity of a map value over the instance: faint near 0, opaque from half the scale on
 * (deepvid_plugin/core/render.py draws MLflow's step cards with the same rule). */
function overlayAlpha(v: number): number {
  return Math.min(1, 0.2 + 1.6 * Math.abs(v));
}

/** The instance under a map: grey and dimmed (ink at mid grey, background near black), so the
 * map's pale colours stand out from it instead of blending into white ink. */
const UNDERLAY_FILTER = "grayscale(1) contrast(0.6) brightness(0.7)";

/** RGBA pixels of a map. With `overlay`, alpha follows |v| so the instance underneath shows
 * through where the map has nothing to say (values near zero). */
function mapPixels(m: Map2D, overlay: boolean, gain: number, sign: MapSign): HTMLCanvasElement {
  const [c, ctx] = small(m.w, m.h);
  const img = ctx.createImageData(m.w, m.h);
  const positive = sign === "positive";
  const lut = positive ? SEQUENTIAL_LUT : DIVERGING_LUT;
  for (let i = 0; i < m.values.length; i++) {
    const v = Math.max(positive ? 0 : -1, Math.min(1, m.values[i] * gain));
    const j = (positive ? Math.round(v * 255) : Math.round((v + 1) * 127.5)) * 3;
    img.data[i * 4] = lut[j];
    img.data[i * 4 + 1] = lut[j + 1];
    img.data[i * 4 + 2] = lut[j + 2];
    img.data[i * 4 + 3] = overlay ? Math.round(255 * overlayAlpha(v)) : 255;
  }
  ctx.putImageData(img, 0, 0);
  return c;
}

const imageCache = new WeakMap<EncodedImg, HTMLCanvasElement>();

function imagePixels(img: EncodedImg): HTMLCanvasElement {
  let c = imageCache.get(img);
  if (!c) {
    const data = decodeImage(img);
    const [cv, ctx] = small(data.width, data.height);
    ctx.putImageData(data, 0, 0);
    imageCache.set(img, (c = cv));
  }
  return c;
}

function target(size: number, aspect: number, cls: string): [HTMLCanvasElement, CanvasRenderingContext2D] {
  const dpr = Math.min(2, window.devicePixelRatio || 1);
  const w = Math.round(size);
  const hgt = Math.round(size * aspect);
  const [c, ctx] = small(Math.round(w * dpr), Math.round(hgt * dpr));
  c.style.width = `${w}px`;
  c.style.height = `${hgt}px`;
  c.className = cls;
  return [c, ctx];
}

/** Whether a map (over `image`, when given) is small enough to draw pixel-crisp. */
export function isSmall(m: { w: number }, image?: EncodedImg | null): boolean {
  const width = image ? image.shape[image.shape.length - 1] : m.w;
  return width <= CRISP_MAX;
}

export interface MapOptions {
  /** The instance, drawn in grey underneath the map. */
  image?: EncodedImg;
  /** Rescale values: draw `value * scale / sharedScale` (maps that share one colour scale). */
  sharedScale?: number;
  cls?: string;
  /** Pixel-crisp squares (default: when the input is at most CRISP_MAX pixels wide). */
  crisp?: boolean;
  /** The map's colour scale (default: signed, centred at zero). */
  sign?: MapSign;
}

/** A map as a canvas `size` px wide, optionally over the instance. */
export function mapCanvas(map: EncodedMap | Map2D, size: number, opts: MapOptions = {}): HTMLCanvasElement {
  const m = "values" in map ? map : decodeMap(map);
  const [c, ctx] = target(size, m.h / m.w, opts.cls ?? "map");
  const crisp = opts.crisp ?? isSmall(m, opts.image);
  c.dataset.crisp = String(crisp);
  c.dataset.sign = opts.sign ?? "signed";
  if (opts.image) {
    ctx.imageSmoothingEnabled = false;
    ctx.filter = UNDERLAY_FILTER;
    ctx.drawImage(imagePixels(opts.image), 0, 0, c.width, c.height);
    ctx.filter = "none";
  }
  ctx.imageSmoothingEnabled = !crisp;
  ctx.imageSmoothingQuality = "high";
  const gain = opts.sharedScale && opts.sharedScale > 0 ? m.scale / opts.sharedScale : 1;
  ctx.drawImage(mapPixels(m, Boolean(opts.image), gain, opts.sign ?? "signed"), 0, 0, c.width, c.height);
  return c;
}

/** An image (instance or neighbour) as a canvas `size` px wide, pixels kept crisp. */
export function imageCanvas(img: EncodedImg, size: number, cls = "img"): HTMLCanvasElement {
  const src = imagePixels(img);
  const [c, ctx] = target(size, src.height / src.width, cls);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(src, 0, 0, c.width, c.height);
  return c;
}

/** A horizontal colour bar: `[-scale, scale]` for signed maps, `[0, scale]` for maps that are
 * never negative. */
export function colorbar(scale: number, label = "weight", sign: MapSign = "signed"): HTMLElement {
  const positive = sign === "positive";
  return h(
    "div",
    { class: "colorbar", "data-sign": sign, "data-testid": "colorbar",
      title: positive ? `${label}: white zero, red its peak (never negative)`
        : `${label}: blue negative, white zero, red positive` },
    h("span", { class: "cb-tick" }, positive ? "0" : `−${fmtScale(scale)}`),
    h("span", { class: "cb-bar", style: `background: ${scaleGradient(sign)}` }),
    h("span", { class: "cb-tick" }, `+${fmtScale(scale)}`),
  );
}
