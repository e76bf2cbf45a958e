// Aladin Lite is an ES module: loaded here (when installed) and handed to cutout.js.
import A from "./vendor/aladin-lite/aladin.js";
window.A = A;
document.dispatchEvent(new CustomEvent("aladinready"));
