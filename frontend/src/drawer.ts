// The detail drawer: the detail panel slides in over the right of the page, the grid keeps its
// size, and the selected cell is scrolled to stay visible beside the drawer (overview.reveal).
// Its height is the window's; its sections scroll inside it.
import { h } from "./dom";

export interface Drawer {
  readonly el: HTMLElement;
  /** The drawer's content slot (cleared by show). */
  readonly slot: HTMLElement;
  /** Open it below `top` (the toolbar's bottom edge: the toolbar stays usable). */
  show(top?: number): void;
  hide(): void;
  readonly open: boolean;
  /** The drawer's left edge in the viewport, and its width (0 when closed). */
  edge(): { left: number; width: number };
}

export function drawer(onClose: () => void): Drawer {
  const slot = h("div", { class: "drawer-slot" });
  const el = h("aside", { class: "dv-drawer", "data-testid": "detail-drawer", "aria-hidden": "true" }, slot);
  let open = false;
  el.addEventListener("keydown", (ev) => { if (ev.key === "Escape") onClose(); });
  return {
    el,
    slot,
    get open() { return open; },
    show(top = 0) {
      open = true;
      el.style.top = `${Math.max(0, Math.round(top))}px`;
      el.classList.add("open");
      el.setAttribute("aria-hidden", "false");
    },
    hide() {
      open = false;
      el.classList.remove("open");
      el.setAttribute("aria-hidden", "true");
      slot.replaceChildren();
    },
    edge() {
      const right = document.documentElement.clientWidth;
      if (!open) return { left: right, width: 0 };
      // where it ends up, not where its slide-in is now
      return { left: right - el.offsetWidth, width: el.offsetWidth };
    },
  };
}
