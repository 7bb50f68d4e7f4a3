// The whole configuration of ami-guard, in fail2ban's words where fail2ban has one. Every field can come from the
// JSON file given with --config or from an environment variable AMI_GUARD_<PATH> (dots become underscores:
// policy.maxretry → AMI_GUARD_POLICY_MAXRETRY). config/example.json documents every field.
import { hostname } from 'node:os';

/** Failure kinds counted by default: the Error-severity events a password guesser or scanner triggers. */
export const DEFAULT_FAILURE_KINDS = ['InvalidAccountID', 'ChallengeResponseFailed', 'InvalidPassword', 'FailedACL'];

export const schema = {
  ami: {
    host: { doc: 'Asterisk Manager Interface host.', format: String, default: '127.0.0.1' },
    port: { doc: 'AMI TCP port.', format: 'port', default: 5038 },
    username: { doc: 'AMI user (manager.conf section; read = security,system is all it needs).', format: String, default: 'ami-guard' },
    secret: { doc: 'AMI secret. Never logged.', format: String, default: '', sensitive: true },
    pingInterval: { doc: 'How often a Ping checks that the AMI connection is alive.', format: 'duration', default: '10s' },
    pingTimeout: { doc: 'A Ping unanswered this long tears the connection down and reconnects.', format: 'duration', default: '5s' },
    reconnectMax: { doc: 'Cap of the exponential reconnect backoff (the first retry comes within 250 ms).', format: 'duration', default: '10s' },
  },
  redis: {
    url: {
      doc: 'Redis shared by the fleet: redis://[user:password@]host:port[/db] or rediss:// for TLS. Empty: an embedded in-process store (one PBX, nothing shared or persisted).',
      format: 'redis-url',
      default: '',
      sensitive: true,
    },
    keyPrefix: { doc: 'Prefix of every key ami-guard writes.', format: 'key-prefix', default: 'ami-guard:' },
  },
  node: {
    id: { doc: 'This PBX\'s name in ban records and history.', format: String, default: hostname() },
  },
  policy: {
    failures: {
      doc: 'AMI security event kinds that count as failures.',
      format: 'event-names',
      default: DEFAULT_FAILURE_KINDS,
    },
    maxretry: { doc: 'Failures from one address within findtime that trigger a ban.', format: 'positive-int', default: 5 },
    findtime: { doc: 'The sliding window in which maxretry failures must fall.', format: 'duration', default: '10m' },
    bantime: { doc: 'How long a ban lasts.', format: 'duration', default: '1h' },
    ignoreip: {
      doc: 'Addresses and CIDR networks (IPv4 and IPv6) never counted and never banned.',
      format: 'ip-list',
      default: ['127.0.0.0/8', '::1'],
    },
    history: {
      ttl: { doc: 'How long an address\'s ban history is kept.', format: 'duration', default: '30d' },
    },
  },
  nft: {
    table: { doc: 'Our own nftables table (family inet); ami-guard touches nothing outside it.', format: 'nft-name', default: 'ami_guard' },
    path: { doc: 'The nft binary.', format: String, default: 'nft' },
    netns: {
      doc: 'Apply bans inside this network namespace (an ip-netns name or a path like /proc/PID/ns/net) instead of our own; empty: our own.',
      format: 'netns',
      default: '',
    },
  },
  pipeline: {
    maxPending: {
      doc: 'Events waiting for the store at most; beyond it new failure events are shed (counted), decided bans never are.',
      format: 'positive-int',
      default: 20000,
    },
  },
  log: {
    level: {
      doc: 'Log level.',
      format: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'],
      default: 'info',
    },
  },
} as const;

export interface AppConfig {
  ami: {
    host: string;
    port: number;
    username: string;
    secret: string;
    pingInterval: number;
    pingTimeout: number;
    reconnectMax: number;
  };
  redis: { url: string; keyPrefix: string };
  node: { id: string };
  policy: {
    failures: string[];
    maxretry: number;
    findtime: number;
    bantime: number;
    ignoreip: string[];
    history: { ttl: number };
  };
  nft: { table: string; path: string; netns: string };
  pipeline: { maxPending: number };
  log: { level: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent' };
}
