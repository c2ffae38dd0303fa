// Bundles src/ into dist/console.js, the one script the binary serves at
// /console/assets/console.js. The dependencies are pinned by package-lock.json and esbuild's
// output is a function of its input and version, so the bundle is reproducible:
// `node build.mjs --check` rebuilds it in memory and fails when the committed one differs.
import { build } from "esbuild";
import { readFile, writeFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";

const here = fileURLToPath(new URL(".", import.meta.url));
const outfile = `${here}dist/console.js`;
const check = process.argv.includes("--check");

const result = await build({
  absWorkingDir: here,
  entryPoints: ["src/main.jsx"],
  bundle: true,
  minify: true,
  format: "iife",
  target: ["es2022"],
  jsx: "automatic",
  define: { "process.env.NODE_ENV": '"production"' },
  // The licences of what is bundled (React's, Convex's) travel with it.
  legalComments: "eof",
  charset: "utf8",
  outfile,
  write: false,
  logLevel: "warning",
});
const built = result.outputFiles[0].text;

if (check) {
  const committed = await readFile(outfile, "utf8").catch(() => "");
  if (committed !== built) {
    console.error(
      "crates/api/console/dist/console.js does not match its sources: run `node crates/api/console/build.mjs` and commit it.",
    );
    process.exit(1);
  }
  console.log(`console bundle matches its sources (${built.length} bytes)`);
} else {
  await writeFile(outfile, built);
  console.log(`wrote ${outfile} (${built.length} bytes)`);
}
