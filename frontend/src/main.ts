// Entry point, built as the IIFE global `DeepVID`.
//
//   DeepVID.mount(element, { apiBase })    live backend: TensorBoard plugin, MLflow app
//   DeepVID.mount(element, { snapshot })   inline snapshot: self-contained viewer.html
//
// Pages that must not run inline scripts mark an element with `data-deepvid-mount` instead; it is
// mounted on load with `data-api-base`, or with `window.__DEEPVID_SNAPSHOT__` when that is set.
import "./style.css";
import { App, type AppOptions, type View } from "./app";
import { httpSource, snapshotKey, snapshotSource, type DataSource } from "./data";

export interface MountOptions extends AppOptions {
  apiBase?: string | URL;
  snapshot?: Record<string, unknown>;
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
  const app = new App(element, source, options);
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
    });
  });
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", autoMount);
else autoMount();

export { snapshotKey };
