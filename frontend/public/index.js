// TensorBoard dynamic-plugin entry (served at /data/plugin/deepvid/index.js and imported by
// TensorBoard inside the plugin's iframe). Hand-written, not bundled: it only pulls in the built
// stylesheet and bundle from the same folder (CSP: script-src 'self') and mounts the app with the
// plugin's own route prefix as the API base, following and keeping the link in TensorBoard's
// address (see outerPage).
const BASE = new URL("./", import.meta.url);

function load(tag, attrs) {
  return new Promise((resolve, reject) => {
    const el = document.createElement(tag);
    Object.assign(el, attrs);
    el.onload = () => resolve(el);
    el.onerror = () => reject(new Error(`DeepVID: could not load ${attrs.href || attrs.src}`));
    document.head.appendChild(el);
  });
}

export async function render() {
  await Promise.all([
    load("link", { rel: "stylesheet", href: new URL("deepvid.css", BASE).href }),
    load("script", { src: new URL("deepvid.js", BASE).href }),
  ]);
  const root = document.createElement("div");
  document.body.appendChild(root);
  window.DeepVID.mount(root, { apiBase: BASE.href, linkHost: outerPage() });
}

// TensorBoard owns this iframe's address; the shareable one is the outer page's. TensorBoard
// keeps its state in the hash (#deepvid) and leaves the query string alone, so the DeepVID link
// lives there with a "deepvid_" prefix: /?deepvid_view=compare&deepvid_a=RUN&deepvid_b=RUN#deepvid.
// The outer page is same-origin; anywhere it is not (or there is none), there is no link.
function outerPage() {
  try {
    const outer = window.parent;
    if (outer === window) return undefined;
    void outer.location.search; // throws for another origin
    return { window: outer, prefix: "deepvid_" };
  } catch {
    return undefined;
  }
}
