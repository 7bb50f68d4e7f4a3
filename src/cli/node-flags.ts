// The V8 flags the daemon runs with: the shebang of main.ts, the Dockerfile's ENTRYPOINT and the benchmarks use
// these (test/unit/deploy.test.ts checks they agree). Without them V8 grows its heap to a few hundred MB under a
// flood and keeps it: the throughput bench (1M events, 100k bans) ended at 236 MB RSS, peak 325; with them 119, peak
// 165, at the same CPU per event. What the daemon holds live is bounded well below 256 MB: at most
// pipeline.maxPending folded entries waiting for the store (~40 MB at 100k), the ban cache (200k compact entries),
// what it knows of the kernel sets, the feeds' packed entries.
// (--no-lazy was tried for the first ban of a fresh process, whose path runs then for the first time: 0.8 ms sooner
// to the nft writer, but 13-15 µs of CPU per event instead of 11 in the throughput bench, and more RSS. Not kept.)
export const DAEMON_NODE_FLAGS: readonly string[] = ['--max-old-space-size=256', '--max-semi-space-size=8'];
