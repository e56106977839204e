// Type declarations of testkit.js (a build with `build.sh --testkit` only).
import type { Server as WasmServer, TlFront as WasmTlFront } from "./pkg/confchain_js.js";
/** The server model (a test double): `handle(from, request)` -> `{updates?, error?, pushes: [{to, update}]}`. */
export declare const Server: typeof WasmServer;
export type Server = WasmServer;
/** The server model's TL front: `handle(server, from, functionBytes)` -> `{result, pushes: [{to, updates}]}`. */
export declare const TlFront: typeof WasmTlFront;
export type TlFront = WasmTlFront;
