// A tiny element builder. Strings always become text nodes (textContent), never HTML: run names,
// instance ids and class names are user data and may contain markup.

type Child = Node | string | number | null | undefined | false;
type Attrs = Record<string, string | number | boolean | null | undefined | EventListener>;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key === "class") {
      el.className = String(value);
    } else if (key === "text") {
      el.textContent = String(value);
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(el, ...children);
  return el;
}

export function append(el: Node, ...children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    el.appendChild(typeof c === "object" ? c : document.createTextNode(String(c)));
  }
}

export function clear(el: Element): void {
  while (el.firstChild) el.removeChild(el.firstChild);
}

export function fmt(v: number | undefined | null, digits = 2): string {
  return typeof v === "number" && Number.isFinite(v) ? v.toFixed(digits) : "–";
}

/** A colour bar's end: 3 significant digits, so a scale of 0.0003 does not read "0.000". */
export function fmtScale(v: number | undefined | null): string {
  return typeof v === "number" && Number.isFinite(v) ? String(Number(v.toPrecision(3))) : "–";
}

export function pct(v: number | undefined | null): string {
  return typeof v === "number" && Number.isFinite(v) ? `${(v * 100).toFixed(0)}%` : "–";
}

/** Class name for index k, or a readable placeholder when the index is out of range. */
export function className(names: string[], k: number | null | undefined): string {
  if (k === null || k === undefined) return "unknown";
  return names[k] ?? `class ${k}`;
}

/** A number with at most 4 significant digits, without trailing zeros. */
export function fmtNumber(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  if (Number.isInteger(v)) return String(v);
  return String(Number(v.toPrecision(4)));
}
