// Network Dissection (Bau et al., CVPR 2017): one record per layer, its units' concept labels.
// Its own top-level view; the Network Dissection issue fills it in.
import { registerView } from "./registry";
import { pageShell } from "./page";

registerView({
  kind: "netdissect",
  label: "Dissection",
  description: "Network Dissection: which units of a layer detect which concepts",
  layout: "page",
  render(host, parent, run, info) {
    parent.appendChild(pageShell("netdissect", "Network Dissection", "Add a NetDissect explainer to the " +
      "callback to label each layer's units with the concepts they detect.", host.runName(run), info));
  },
});
