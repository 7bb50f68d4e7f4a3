// tsc does not copy non-TypeScript files; the Lua scripts and the nft writer's helper are loaded at run time from
// next to the compiled code that uses them.
import { chmodSync, cpSync, mkdirSync } from 'node:fs';
for (const dir of ['store', 'feeds']) {
  mkdirSync(`dist/src/${dir}`, { recursive: true });
  cpSync(`src/${dir}/lua`, `dist/src/${dir}/lua`, { recursive: true });
}
mkdirSync('dist/src/firewall', { recursive: true });
cpSync('src/firewall/nft-writer.py', 'dist/src/firewall/nft-writer.py');
// The bin runs through its shebang (which carries the daemon's heap limits), so it must be executable in place,
// not only once npm links it.
chmodSync('dist/src/cli/main.js', 0o755);
