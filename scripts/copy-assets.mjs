// tsc does not copy non-TypeScript files; the Lua scripts are loaded at run time from next to the compiled modules.
import { cpSync, mkdirSync } from 'node:fs';
for (const dir of ['store', 'feeds']) {
  mkdirSync(`dist/src/${dir}`, { recursive: true });
  cpSync(`src/${dir}/lua`, `dist/src/${dir}/lua`, { recursive: true });
}
