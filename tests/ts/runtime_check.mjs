// Looks each function path given on the command line up in the generated
// runtime `api` the way app code does (`chatMessages:listBySession` is
// `api.chatMessages.listBySession`, `dir/mod:f` is `api.dir.mod.f`) and prints
// the name the convex client sends for that reference, one per line.
// Run by tests/codegen.rs next to ./convex/_generated.

import { getFunctionName } from "convex/server";
import { api } from "./convex/_generated/api.js";

for (const path of process.argv.slice(2)) {
  const [module, name] = path.split(":");
  let reference = api;
  for (const key of [...module.split("/"), name]) {
    reference = reference[key];
  }
  console.log(getFunctionName(reference));
}
