// The states a view can be in besides showing data, shared by the shell and the views: loading,
// empty (with what would fill it) and error (the backend's message, as text, and a retry).
import { ApiError } from "./data";
import { h } from "./dom";

export function errorBox(err: unknown, what: string, retry?: () => void): HTMLElement {
  const status = err instanceof ApiError ? err.status : null;
  const title =
    status === 0 ? "Cannot reach the DeepVID backend"
      : status === 404 ? "Not found"
        : status !== null && status >= 400 && status < 500 ? "The request was rejected"
          : "The DeepVID backend reported an error";
  const detail = err instanceof Error ? err.message : String(err);
  return h("div", { class: "dv-state error", "data-testid": "error-state", role: "alert" },
    h("div", { class: "dv-state-icon" }, "!"),
    h("h2", {}, title),
    h("p", {}, `While loading ${what}${status ? ` (HTTP ${status})` : ""}: `, h("code", {}, detail)),
    retry ? h("button", { class: "dv-button", onclick: retry }, "Try again") : null);
}

export function loadingState(message: string, small = false): HTMLElement {
  return h("div", { class: "dv-state loading" + (small ? " small" : ""), "data-testid": "loading" },
    h("div", { class: "spinner" }), message);
}

export function emptyState(title: string, message: string | Node): HTMLElement {
  return h("div", { class: "dv-state", "data-testid": "empty-state" },
    h("div", { class: "dv-state-icon" }, "∅"), h("h2", {}, title), h("p", {}, message));
}
