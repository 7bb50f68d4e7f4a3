// Worker thread running the synthetic AMI server for the parse benchmarks, so the client under test has the main
// thread (and a core) to itself. Builds the stream, listens, blasts it at the first client to log in.
import { parentPort, workerData } from 'node:worker_threads';
import { SyntheticAmi } from './ami-server.js';
import { buildAmiStream, type StreamShape } from './stream.js';

const shape = workerData as StreamShape;
const stream = buildAmiStream(shape);
const ami = await SyntheticAmi.start();
parentPort!.on('message', (m: unknown) => {
  if (m === 'stop') void ami.stop().then(() => parentPort!.close());
});
parentPort!.postMessage({ type: 'listening', port: ami.port, bytes: stream.bytes });
await ami.ready;
await ami.blast(stream.chunks);
parentPort!.postMessage({ type: 'written' });
