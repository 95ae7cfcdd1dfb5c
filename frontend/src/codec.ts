// Decoding of the API's compact arrays (http_api.md, "Encoded arrays" / "Encoded images").
import type { EncodedImg, EncodedMap } from "./types";

function bytes(b64: string): Uint8Array {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** A 2-D map: `values` in [-1, 1] (relative to `scale` = max |w|), row-major h x w. */
export interface Map2D {
  h: number;
  w: number;
  scale: number;
  values: Float32Array;
}

const mapCache = new WeakMap<EncodedMap, Map2D>();

/** Decode a weight map; (C, H, W) maps are averaged over channels, as the overview shows them. */
export function decodeMap(m: EncodedMap): Map2D {
  const hit = mapCache.get(m);
  if (hit) return hit;
  const raw = new Int8Array(bytes(m.data).buffer);
  const shape = m.shape;
  const h = shape[shape.length - 2] ?? 1;
  const w = shape[shape.length - 1] ?? raw.length;
  const c = shape.length >= 3 ? shape[shape.length - 3] : 1;
  const n = h * w;
  if (raw.length !== c * n) {
    throw new Error(`weight map: shape [${shape}] needs ${c * n} values, got ${raw.length}`);
  }
  const values = new Float32Array(n);
  for (let ch = 0; ch < c; ch++) for (let i = 0; i < n; i++) values[i] += raw[ch * n + i] / 127 / c;
  // Channel averaging can shrink the peak; renormalise so the colour map uses its full range.
  let peak = 0;
  for (let i = 0; i < n; i++) peak = Math.max(peak, Math.abs(values[i]));
  const scale = m.scale * peak;
  if (peak > 0) for (let i = 0; i < n; i++) values[i] /= peak;
  const out = { h, w, scale, values };
  mapCache.set(m, out);
  return out;
}

/** An image as RGBA ImageData (grey for one channel, RGB for three, channel mean otherwise). */
export function decodeImage(img: EncodedImg): ImageData {
  const raw = bytes(img.data);
  const [c, h, w] = img.shape.length === 3 ? img.shape : [1, img.shape[0], img.shape[1]];
  const n = h * w;
  if (raw.length !== c * n) {
    throw new Error(`image: shape [${img.shape}] needs ${c * n} bytes, got ${raw.length}`);
  }
  const out = new ImageData(w, h);
  for (let i = 0; i < n; i++) {
    let r: number, g: number, b: number;
    if (c === 3) [r, g, b] = [raw[i], raw[n + i], raw[2 * n + i]];
    else {
      let s = 0;
      for (let ch = 0; ch < c; ch++) s += raw[ch * n + i];
      r = g = b = Math.round(s / c);
    }
    out.data.set([r, g, b, 255], i * 4);
  }
  return out;
}

/** Every channel of a (C, H, W) map in its own units (value = int8 / 127 * scale). */
export function decodeChannels(m: EncodedMap): { c: number; h: number; w: number; channels: Float32Array[] } {
  const raw = new Int8Array(bytes(m.data).buffer);
  const shape = m.shape;
  const h = shape[shape.length - 2] ?? 1;
  const w = shape[shape.length - 1] ?? raw.length;
  const c = shape.length >= 3 ? shape[shape.length - 3] : 1;
  const n = h * w;
  if (raw.length !== c * n) {
    throw new Error(`map: shape [${shape}] needs ${c * n} values, got ${raw.length}`);
  }
  const channels: Float32Array[] = [];
  for (let ch = 0; ch < c; ch++) {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = (raw[ch * n + i] / 127) * m.scale;
    channels.push(out);
  }
  return { c, h, w, channels };
}

/** A 2-D map from values in their own units: normalised to [-1, 1] by its peak, `scale` = peak. */
export function toMap2D(values: Float32Array, h: number, w: number): Map2D {
  let peak = 0;
  for (let i = 0; i < values.length; i++) peak = Math.max(peak, Math.abs(values[i]));
  const out = new Float32Array(values.length);
  if (peak > 0) for (let i = 0; i < values.length; i++) out[i] = values[i] / peak;
  return { h, w, scale: peak, values: out };
}
