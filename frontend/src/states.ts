// Error state shared by the shell and the views: a readable error with the backend's message (as
// text) and an optional retry button.
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
