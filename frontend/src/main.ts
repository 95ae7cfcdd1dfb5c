// Entry point, built as the IIFE global `DeepVID`.
//
//   DeepVID.mount(element, { apiBase })    live backend: TensorBoard plugin, MLflow app
//   DeepVID.mount(element, { snapshot })   inline snapshot: self-contained viewer.html
//
//   DeepVID.mount(element, { apiBase, link: { window: window.parent, prefix: "deepvid_" } })
//                                          also open the link in that window's address and keep
//                                          it up to date (TensorBoard: the outer page, url.ts)
//
// Pages that must not run inline scripts mark an element with `data-deepvid-mount` instead; it is
// mounted on load with `data-api-base`, or with `window.__DEEPVID_SNAPSHOT__` when that is set.
// A live page (data-api-base: the MLflow app) follows and keeps the link in its own address; a
// snapshot (viewer.html) ignores its address, which is wherever the file was saved.
import "./style.css";
import { App, type AppOptions, type View } from "./app";
import { httpSource, snapshotKey, snapshotSource, type DataSource } from "./data";
import { hostLink, replaceLink, type LinkHost } from "./url";

export interface MountOptions extends AppOptions {
  apiBase?: string | URL;
  snapshot?: Record<string, unknown>;
  /** The window whose address holds the link (url.ts), and the parameters' name prefix. */
  linkHost?: LinkHost;
}

declare global {
  interface Window {
    __DEEPVID_SNAPSHOT__?: Record<string, unknown>;
  }
}

export function mount(element: HTMLElement, options: MountOptions = {}): App {
  if (!(element instanceof HTMLElement)) {
    throw new TypeError(`element: expected an HTMLElement, got ${String(element)}`);
  }
  let source: DataSource;
  const snapshot = options.snapshot ?? (options.apiBase === undefined ? window.__DEEPVID_SNAPSHOT__ : undefined);
  if (snapshot !== undefined) source = snapshotSource(snapshot);
  else if (options.apiBase !== undefined) source = httpSource(options.apiBase);
  else throw new TypeError("options: expected apiBase (a live backend) or snapshot (inline responses)");
  const host = options.linkHost;
  const link = host ? hostLink(host) : null;
  const app = new App(element, source, link === null ? options : {
    ...options,
    link: { ...link, ...options.link },
    linkPrefix: host!.prefix ?? "",
    onLink: (next) => { replaceLink(host!, next); options.onLink?.(next); },
  });
  void app.start();
  return app;
}

function autoMount(): void {
  document.querySelectorAll<HTMLElement>("[data-deepvid-mount]").forEach((el) => {
    const d = el.dataset;
    mount(el, {
      apiBase: d.apiBase,
      title: d.title,
      view: (d.view as View | undefined) ?? undefined,
      run: d.run,
      // Only a live page's address is a link to its state (see the top of this file).
      linkHost: d.apiBase !== undefined ? { window } : undefined,
    });
  });
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", autoMount);
else autoMount();

export { snapshotKey };
