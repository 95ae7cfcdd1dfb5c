// Canvas drawing of weight maps and images. Maps are drawn at their native resolution into an
// off-screen canvas and scaled up by the browser, so a 16x16 thumbnail and a 28x28 map look alike.
import { decodeImage, decodeMap, type Map2D } from "./codec";
import { DIVERGING_LUT, divergingCss } from "./colors";
import { fmtScale, h } from "./dom";
import type { EncodedImg, EncodedMap } from "./types";

function small(w: number, hgt: number): [HTMLCanvasElement, CanvasRenderingContext2D] {
  const c = document.createElement("canvas");
  c.width = w;
  c.height = hgt;
  return [c, c.getContext("2d")!];
}

/** Opacity of a map value over the instance: faint near 0, opaque from half the scale on
 * (deepvid_plugin/mlflow/sink.py draws MLflow's step images with the same rule). */
function overlayAlpha(v: number): number {
  return Math.min(1, 0.2 + 1.6 * Math.abs(v));
}

/** The instance under a map: grey and dimmed (ink at mid grey, background near black), so the
 * map's pale colours stand out from it instead of blending into white ink. */
const UNDERLAY_FILTER = "grayscale(1) contrast(0.6) brightness(0.7)";

/**
 * RGBA pixels of a map. With `overlay`, alpha follows |w| so the instance underneath shows
 * through where the explanation has nothing to say (weights near zero).
 */
function mapPixels(m: Map2D, overlay: boolean, gain = 1): HTMLCanvasElement {
  const [c, ctx] = small(m.w, m.h);
  const img = ctx.createImageData(m.w, m.h);
  for (let i = 0; i < m.values.length; i++) {
    const v = Math.max(-1, Math.min(1, m.values[i] * gain));
    const j = Math.round((v + 1) * 127.5) * 3;
    img.data[i * 4] = DIVERGING_LUT[j];
    img.data[i * 4 + 1] = DIVERGING_LUT[j + 1];
    img.data[i * 4 + 2] = DIVERGING_LUT[j + 2];
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

export interface MapOptions {
  /** The instance, drawn in grey underneath the map. */
  image?: EncodedImg;
  /** Rescale values: draw `value * scale / sharedScale` (maps that share one colour scale). */
  sharedScale?: number;
  cls?: string;
  /** Draw map pixels as crisp squares aligned with the instance's (default: smoothed). */
  crisp?: boolean;
}

/** A weight map as a canvas `size` px wide, optionally over the instance. */
export function mapCanvas(map: EncodedMap | Map2D, size: number, opts: MapOptions = {}): HTMLCanvasElement {
  const m = "values" in map ? map : decodeMap(map);
  const [c, ctx] = target(size, m.h / m.w, opts.cls ?? "map");
  ctx.imageSmoothingEnabled = true;
  ctx.imageSmoothingQuality = "high";
  if (opts.image) {
    ctx.imageSmoothingEnabled = false;
    ctx.filter = UNDERLAY_FILTER;
    ctx.drawImage(imagePixels(opts.image), 0, 0, c.width, c.height);
    ctx.filter = "none";
    ctx.imageSmoothingEnabled = true;
  }
  if (opts.crisp) ctx.imageSmoothingEnabled = false;
  const gain = opts.sharedScale && opts.sharedScale > 0 ? m.scale / opts.sharedScale : 1;
  ctx.drawImage(mapPixels(m, Boolean(opts.image), gain), 0, 0, c.width, c.height);
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

/** A horizontal colour bar for a map whose values run over [-scale, scale]. */
export function colorbar(scale: number, label = "weight"): HTMLElement {
  const stops = [-1, -0.5, 0, 0.5, 1].map((v) => `${divergingCss(v)} ${(v + 1) * 50}%`).join(", ");
  return h(
    "div",
    { class: "colorbar", title: `${label}: blue negative, white zero, red positive` },
    h("span", { class: "cb-tick" }, `−${fmtScale(scale)}`),
    h("span", { class: "cb-bar", style: `background: linear-gradient(to right, ${stops})` }),
    h("span", { class: "cb-tick" }, `+${fmtScale(scale)}`),
  );
}
