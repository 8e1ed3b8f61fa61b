// Builds classifier.js into a WebAssembly component of plume's `processor`
// world with componentize-js (StarlingMonkey). Usage, from this folder:
//   npm ci && node build.mjs [OUT.wasm]
// Default output: ../../../target/examples/js_classifier.wasm
import { componentize } from '@bytecodealliance/componentize-js';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const out = resolve(process.argv[2] ?? resolve(here, '../../../target/examples/js_classifier.wasm'));
const { component } = await componentize({
  sourcePath: resolve(here, 'classifier.js'),
  witPath: resolve(here, '../../../wit'),
  worldName: 'processor',
  // plume grants no capabilities; wasi:http in particular is not linked.
  disableFeatures: ['stdio', 'random', 'clocks', 'http', 'fetch-event'],
});
await mkdir(dirname(out), { recursive: true });
await writeFile(out, component);
console.log(`wrote ${out} (${component.length} bytes)`);
