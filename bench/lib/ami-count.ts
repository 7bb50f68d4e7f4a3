// An independent count of the security events an AMI endpoint sends: a raw TCP login and a byte scan for message
// ends, sharing no code with src/ (so it can vouch for the daemon's own count). Run as a child, in the namespace of
// the AMI endpoint if need be: `node ami-count.js HOST PORT USER SECRET`; SIGUSR1 starts the count afresh; on SIGTERM it
// prints one JSON line:
// {events, bytes, firstAt, lastAt, disconnects}. Like shared/lab/ami-count.py, it logs in with `Events: security`.
import { connect } from 'node:net';

const [host = '127.0.0.1', portText = '5038', user = '', secret = ''] = process.argv.slice(2);
let events = 0;
let bytes = 0;
let firstAt = 0;
let lastAt = 0;
let disconnects = 0;
let tail = '';

const socket = connect({ host, port: Number(portText) }, () => {
  socket.write(`Action: Login\r\nUsername: ${user}\r\nSecret: ${secret}\r\nEvents: security\r\nActionID: count-1\r\n\r\n`);
});
socket.setEncoding('latin1');
socket.on('data', (chunk: string) => {
  bytes += chunk.length;
  // messages end in an empty line; a security event's second line names the class
  const text = tail + chunk;
  let from = 0;
  for (;;) {
    const end = text.indexOf('\r\n\r\n', from);
    if (end === -1) break;
    const msg = text.slice(from, end);
    if (msg.startsWith('Event: ') && /\r\nPrivilege: security/.test(msg)) {
      events++;
      lastAt = Date.now();
      if (firstAt === 0) firstAt = lastAt;
    }
    from = end + 4;
  }
  tail = text.slice(from);
});
socket.on('close', () => {
  disconnects++;
});
socket.on('error', () => undefined);
const report = (): void => {
  process.stdout.write(`${JSON.stringify({ events, bytes, firstAt, lastAt, disconnects })}\n`, () => process.exit(0));
};
process.on('SIGTERM', report);
// the bench's starting line: both counts begin here (the logins' own SuccessfulAuth events come before it)
process.on('SIGUSR1', () => {
  events = 0;
  firstAt = 0;
});
process.on('SIGINT', report);
