// Summit (Hohman et al., VIS 2019): one record per class, its attribution graph.
// Its own top-level view; the Summit issue fills it in.
import { registerView } from "./registry";
import { pageShell } from "./page";

registerView({
  kind: "summit",
  label: "Summit",
  description: "Summit: per class, the attribution graph of the channels that make it up",
  layout: "page",
  render(host, parent, run, info) {
    parent.appendChild(pageShell("summit", "Summit", "Add a Summit explainer to the callback to see, per " +
      "class, the graph of channels that make it up.", host.runName(run), info));
  },
});
