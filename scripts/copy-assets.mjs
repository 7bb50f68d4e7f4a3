// tsc does not copy non-TypeScript files; the Lua scripts are loaded at run time from next to the compiled store.
import { cpSync, mkdirSync } from 'node:fs';
mkdirSync('dist/src/store', { recursive: true });
cpSync('src/store/lua', 'dist/src/store/lua', { recursive: true });
