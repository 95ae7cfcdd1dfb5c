// One IIFE bundle (global `DeepVID`) + one stylesheet, with stable names, so that the same two files
// serve the TensorBoard tab (loaded by public/index.js), the MLflow app page and the inline
// viewer.html (deepvid_plugin/viewer.py pastes them into the page). No content hashes: the built
// files are committed and `.ci/frontend-check` compares them with a fresh build byte for byte.
import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));

export default defineConfig({
  // Relative asset URLs only: viewer.html runs from a blob: URL where nothing can be fetched.
  base: "./",
  publicDir: "public",
  build: {
    outDir: here("../deepvid_plugin/static"),
    emptyOutDir: true,
    copyPublicDir: true,
    target: "es2020",
    // Inline every asset (there are none today besides CSS) so nothing is fetched at run time.
    assetsInlineLimit: Number.MAX_SAFE_INTEGER,
    sourcemap: false,
    reportCompressedSize: false,
    lib: {
      entry: here("src/main.ts"),
      name: "DeepVID",
      formats: ["iife"],
      fileName: () => "deepvid.js",
      cssFileName: "deepvid",
    },
  },
});
