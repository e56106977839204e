// The test doubles of confchain for JavaScript: the server model (`Server`) and its TL front
// (`TlFront`). Only in a build with the `testkit` feature (`bash build.sh --testkit`, as test.sh
// builds it); the npm package is built without them and does not ship this file.
import "./index.js"; // loads the WebAssembly module
import * as wasm from "./pkg/confchain_js.js";

if (typeof wasm.Server !== "function") {
  throw new Error("confchain was built without the testkit feature: bash build.sh --testkit");
}

export const { Server, TlFront } = wasm;
