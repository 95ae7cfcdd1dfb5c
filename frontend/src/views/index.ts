// One import per kind's view module, in the order the kind switch lists them.
import "./deepvid";
import "./gradcam";
import "./cam_agreement";
import "./netdissect";
import "./summit";
import "./attribution";

export { allViews, instanceView, pageViews, viewFor } from "./registry";
export type { InstanceView, KindView, PageView } from "./registry";
