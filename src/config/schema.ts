// The whole configuration of ami-guard, in fail2ban's words where fail2ban has one. Every field can come from the
// JSON file given with --config or from an environment variable AMI_GUARD_<PATH> (dots become underscores:
// policy.maxretry → AMI_GUARD_POLICY_MAXRETRY). config/example.json documents every field.
import { hostname } from 'node:os';

/**
 * How much each kind of Asterisk's security-event catalogue counts against its address. The Error-severity kinds an
 * attacker causes count 1; informational ones 0 (ChallengeSent feeds the scanner rule, SuccessfulAuth the trust rule);
 * MemoryLimit and LoadAverageLimit are the server's own limits, not something an address did. `policy.weights` is
 * merged over this; kinds not listed anywhere count 0.
 */
export const DEFAULT_WEIGHTS: Readonly<Record<string, number>> = {
  InvalidAccountID: 1,
  ChallengeResponseFailed: 1,
  InvalidPassword: 1,
  FailedACL: 1,
  RequestNotSupported: 1,
  RequestNotAllowed: 1,
  RequestBadFormat: 1,
  AuthMethodNotAllowed: 1,
  UnexpectedAddress: 1,
  InvalidTransport: 1,
  SessionLimit: 1,
  MemoryLimit: 0,
  LoadAverageLimit: 0,
  SuccessfulAuth: 0,
  ChallengeSent: 0,
};

/** Asterisk's security-event catalogue (main/security_events.c): the kinds `policy.weights` and the metrics know. */
export const SECURITY_EVENT_KINDS: readonly string[] = Object.keys(DEFAULT_WEIGHTS);

export const schema = {
  ami: {
    host: { doc: 'Asterisk Manager Interface host.', format: String, default: '127.0.0.1' },
    port: { doc: 'AMI TCP port.', format: 'port', default: 5038 },
    username: { doc: 'AMI user (manager.conf section; read = security,system is all it needs).', format: String, default: 'ami-guard' },
    secret: { doc: 'AMI secret. Never logged.', format: String, default: '', sensitive: true },
    pingInterval: { doc: 'How often a Ping checks that the AMI connection is alive.', format: 'duration', default: '10s' },
    pingTimeout: { doc: 'A Ping unanswered this long tears the connection down and reconnects.', format: 'duration', default: '5s' },
    reconnectMax: {
      doc: 'Cap of the exponential reconnect backoff (the first retry comes within 250 ms).',
      format: 'duration',
      default: '10s',
    },
  },
  redis: {
    url: {
      doc: 'Redis shared by the fleet: redis://[user:password@]host:port[/db] or rediss:// for TLS. Empty: an embedded in-process store (one PBX, nothing shared; kept in store.stateDir).',
      format: 'redis-url',
      default: '',
      sensitive: true,
    },
    keyPrefix: { doc: 'Prefix of every key ami-guard writes.', format: 'key-prefix', default: 'ami-guard:' },
    sentinels: {
      doc: 'Sentinels (host:port list) of a Sentinel-managed primary named redis.name; used instead of redis.url when set.',
      format: 'host-port-list',
      default: [],
    },
    name: { doc: "The primary's name in Sentinel (with redis.sentinels).", format: String, default: 'mymaster' },
    cluster: {
      doc: 'Redis Cluster nodes (host:port list); used instead of redis.url and redis.sentinels when set.',
      format: 'host-port-list',
      default: [],
    },
    username: {
      doc: 'ACL user for Redis: with redis.sentinels / redis.cluster, or with a redis.url that names none.',
      format: String,
      default: '',
    },
    password: {
      doc: 'Password for Redis: with redis.sentinels / redis.cluster, or with a redis.url that carries none (no URL-escaping needed here). Never logged.',
      format: String,
      default: '',
      sensitive: true,
    },
    tls: { doc: 'TLS to the sentinels / cluster nodes (with redis.url, use rediss://).', format: Boolean, default: false },
    fallback: {
      maxAddresses: {
        doc: 'While Redis is unreachable the daemon counts and bans in memory with the same policy, tracking at most this many addresses, and writes those bans back when Redis returns; 0 turns the fallback off (events are then not counted during an outage).',
        format: 'nat',
        default: 100000,
      },
    },
  },
  store: {
    stateDir: {
      doc: "Directory where ami-guard keeps what must outlive a restart: the embedded store's bans, history and trust (without Redis), and the identity of the store last seen, by which a Redis that lost its data is recognised and re-seeded from the kernel sets. Made if missing (its parent must exist); systemd's StateDirectory=, a volume in Docker.",
      format: 'state-dir',
      default: '/var/lib/ami-guard',
    },
  },
  node: {
    id: { doc: "This PBX's name in ban records, history and the fleet channel.", format: 'node-id', default: hostname() },
  },
  fleet: {
    reconcileInterval: {
      doc: 'How often the nft sets are rebuilt from the ban records in Redis, re-asserting every timeout.',
      format: 'duration',
      default: '5m',
    },
    streamMaxlen: {
      doc: 'Ban/unban messages the fleet channel (a Redis Stream) keeps; a node further behind reconciles from the records.',
      format: 'positive-int',
      default: 100000,
    },
  },
  policy: {
    weights: {
      doc: 'How much each security event kind counts as a failure (0 = informational), merged over the built-in table (docs/detection.md); e.g. {"RequestBadFormat": 2} or, in the environment, RequestBadFormat=2,SessionLimit=0.',
      format: 'weights',
      default: {},
    },
    maxretry: { doc: 'Failures from one address within findtime that trigger a ban.', format: 'positive-int', default: 5 },
    findtime: { doc: 'The sliding window in which maxretry failures must fall.', format: 'duration', default: '10m' },
    bantime: { doc: 'How long a ban lasts.', format: 'duration', default: '1h' },
    ignoreip: {
      doc: 'Addresses and CIDR networks (IPv4 and IPv6) never counted and never banned.',
      format: 'ip-list',
      default: ['127.0.0.0/8', '::1'],
    },
    ignoreself: {
      doc: "fail2ban's ignoreself: never count or ban this host's own addresses, its default gateways, or the Redis, Sentinel, Cluster and AMI hosts it is configured with, whoever asks (detection, the CLI, a fleet message). Loopback, link-local, multicast and the like are never banned either way.",
      format: Boolean,
      default: true,
    },
    widest: {
      ipv4: {
        doc: 'The widest IPv4 network a ban may cover (prefix length): a ban of 0.0.0.0/1 is refused, whoever asks for it.',
        format: 'prefix-v4',
        default: 8,
      },
      ipv6: { doc: 'The widest IPv6 network a ban may cover (prefix length).', format: 'prefix-v6', default: 32 },
    },
    ipv6prefix: {
      doc: 'IPv6 sources are counted and banned per prefix of this length, for an IPv6 attacker holds at least a /64 and can send every request from a new address; 128 counts and bans each address. A prefix that holds an ignore-listed or never-bannable address is counted per address instead.',
      format: 'prefix-v6',
      default: 64,
    },
    subnet: {
      maxbans: {
        doc: 'Subnet escalation: when this many addresses (or IPv6 prefixes) of one subnet have been banned within findtime, the subnet is banned, unless it holds an ignore-listed, trusted or never-bannable address. 0 turns it off.',
        format: 'nat',
        default: 0,
      },
      ipv4: { doc: 'The IPv4 subnet of subnet escalation (prefix length).', format: 'prefix-v4', default: 24 },
      ipv6: { doc: 'The IPv6 subnet of subnet escalation (prefix length).', format: 'prefix-v6', default: 48 },
      bantime: { doc: 'How long a subnet ban lasts.', format: 'duration', default: '1d' },
    },
    history: {
      ttl: { doc: "How long an address's ban history is kept (escalation and recidive read it).", format: 'duration', default: '30d' },
    },
    increment: {
      factor: {
        doc: "fail2ban's bantime.factor: each new ban of an address lasts bantime x factor^(earlier bans).",
        format: 'factor',
        default: 2,
      },
      maxtime: { doc: "fail2ban's bantime.maxtime: the cap of an escalated ban.", format: 'duration', default: '1w' },
      rndtime: {
        doc: "fail2ban's bantime.rndtime: up to this much random time added to each ban, so bots cannot time their return.",
        format: 'duration',
        default: '0s',
      },
    },
    offender: {
      maxretry: {
        doc: 'Failures that ban an address already in the ban history (a known offender gets fewer chances).',
        format: 'positive-int',
        default: 3,
      },
    },
    scanner: {
      maxretry: {
        doc: 'Challenges (ChallengeSent) not followed by a successful login that make an address a silent scanner.',
        format: 'positive-int',
        default: 10,
      },
      findtime: { doc: 'The window for scanner.maxretry.', format: 'duration', default: '1m' },
    },
    trust: {
      ttl: { doc: 'How long a successful login (pjsip/chan_sip with a password) trusts its address.', format: 'duration', default: '1d' },
      maxretry: {
        doc: 'The failure threshold of a trusted address (instead of maxretry): trust is never immunity.',
        format: 'positive-int',
        default: 10,
      },
      ami: { doc: 'Whether a successful AMI login trusts its address too.', format: Boolean, default: false },
    },
    injection: {
      bantime: {
        doc: 'How long the source of an AMI injection is banned: an event carrying lines Asterisk did not write (attacker text with CR LF in the SIP From user) is the strongest sign of an attack there is, and its genuine sender is banned at once.',
        format: 'duration',
        default: '1w',
      },
    },
    recidive: {
      maxretry: {
        doc: 'Bans of one address within recidive.findtime that make the next one a recidive ban.',
        format: 'positive-int',
        default: 5,
      },
      findtime: { doc: 'The window for recidive.maxretry.', format: 'duration', default: '1d' },
      bantime: { doc: 'How long a recidive ban lasts.', format: 'duration', default: '1w' },
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
    checkInterval: {
      doc: 'How often our table is checked; when someone else flushed or deleted it, or emptied its sets, it is recreated and the bans put back. 0 turns the check off; at least 1s otherwise.',
      format: 'duration',
      default: '5s',
    },
    writer: {
      doc: 'persistent: one long-lived child applies every batch through libnftables (needs python3; ~0.2 ms a batch); spawn: an nft process per batch (~8 ms), with nft.path.',
      format: ['persistent', 'spawn'],
      default: 'persistent',
    },
  },
  pipeline: {
    maxPending: {
      doc: 'Distinct addresses whose events may wait for the store at most (the events of one address fold into one entry while store calls are in flight); beyond it events of new addresses are shed (counted), decided bans never are.',
      format: 'positive-int',
      default: 100000,
    },
  },
  control: {
    socket: {
      doc: "Unix socket through which the CLI on this host asks the running daemon (list, show, status, ban, unban), so they work with the embedded store and while Redis is down; mode 0600, so only root and the daemon's own user can use it. Empty turns it off.",
      format: 'socket-path',
      default: '/run/ami-guard/control.sock',
    },
  },
  blocklists: {
    apiban: {
      url: { doc: 'The APIBAN API (v2) base URL; `get` is appended.', format: 'http-url', default: 'https://apiban.org/api/' },
      key: {
        doc: 'Your APIBAN key; empty (and no keyFile): APIBAN is not pulled. Sent only in the Authorization header; never logged or shown.',
        format: String,
        default: '',
        sensitive: true,
      },
      keyFile: {
        doc: 'A file holding the APIBAN key (read at start, surrounding whitespace ignored), instead of key.',
        format: String,
        default: '',
      },
      interval: { doc: 'How often APIBAN is asked for what is new (one node of the fleet asks).', format: 'duration', default: '5m' },
      bantime: {
        doc: 'How long an APIBAN address is blocked after it was last listed (APIBAN never says when one leaves its list).',
        format: 'duration',
        default: '7d',
      },
    },
    lists: {
      doc: 'Plain blocklists: [{"name": "voipbl", "url": "https://…" or a local file, "interval": "4h"}]; one address or network per line, # or ; comments.',
      format: 'blocklists',
      default: [],
    },
    timeout: { doc: 'How long one request to a feed may take, body included.', format: 'duration', default: '30s' },
    maxEntries: {
      doc: 'Entries one feed may hold at most: a longer plain list is refused whole; APIBAN keeps the most recently seen.',
      format: 'positive-int',
      default: 200000,
    },
  },
  http: {
    host: { doc: 'Address the HTTP listener (/metrics, /healthz) binds to.', format: 'ip-address', default: '127.0.0.1' },
    port: { doc: 'Port of the HTTP listener; 0 turns it off.', format: 'port', default: 9538 },
  },
  notify: {
    webhook: {
      url: {
        doc: 'URL that receives a JSON POST for every ban (with a Slack-compatible text field); credentials may sit in the URL. Empty: no notifications. Never logged.',
        format: 'webhook-url',
        default: '',
        sensitive: true,
      },
      timeout: { doc: 'How long one webhook request may take before it counts as failed.', format: 'duration', default: '5s' },
      retries: {
        doc: 'Retries of a failed webhook request, with exponential backoff; 4xx answers are not retried.',
        format: 'nat',
        default: 3,
      },
      queue: {
        doc: 'Notifications waiting for the webhook at most; beyond it the oldest is dropped (counted), so a dead webhook never holds up a ban.',
        format: 'positive-int',
        default: 1000,
      },
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
  redis: {
    url: string;
    keyPrefix: string;
    sentinels: string[];
    name: string;
    cluster: string[];
    username: string;
    password: string;
    tls: boolean;
    fallback: { maxAddresses: number };
  };
  store: { stateDir: string };
  node: { id: string };
  fleet: { reconcileInterval: number; streamMaxlen: number };
  policy: {
    weights: Record<string, number>;
    maxretry: number;
    findtime: number;
    bantime: number;
    ignoreip: string[];
    ignoreself: boolean;
    widest: { ipv4: number; ipv6: number };
    ipv6prefix: number;
    subnet: { maxbans: number; ipv4: number; ipv6: number; bantime: number };
    history: { ttl: number };
    increment: { factor: number; maxtime: number; rndtime: number };
    offender: { maxretry: number };
    scanner: { maxretry: number; findtime: number };
    trust: { ttl: number; maxretry: number; ami: boolean };
    recidive: { maxretry: number; findtime: number; bantime: number };
    injection: { bantime: number };
  };
  nft: { table: string; path: string; netns: string; checkInterval: number; writer: 'persistent' | 'spawn' };
  pipeline: { maxPending: number };
  control: { socket: string };
  blocklists: {
    apiban: { url: string; key: string; keyFile: string; interval: number; bantime: number };
    lists: BlocklistConfig[];
    timeout: number;
    maxEntries: number;
  };
  http: { host: string; port: number };
  notify: { webhook: { url: string; timeout: number; retries: number; queue: number } };
  log: { level: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent' };
}

/** One plain blocklist as configured (checked by the `blocklists` format; the interval is parsed where it is used). */
export interface BlocklistConfig {
  readonly name: string;
  /** http(s) URL, file: URL or absolute path */
  readonly url: string;
  /** a duration; default 4h */
  readonly interval?: string | number;
}
