// What this host is on the network: its own addresses and its default gateways, read from the kernel (no process
// spawned), and the addresses of the services it depends on, resolved once per (re)load. A ban of any of them would
// cut the PBX off from itself, its router, its Redis or its Asterisk, whoever asked for it.
import { lookup } from 'node:dns/promises';
import { readFile } from 'node:fs/promises';
import { networkInterfaces } from 'node:os';
import { ipv4, parseAddress, parseTarget, type IpAddress } from './ip.js';

export interface HostFacts {
  /** every address on every interface of our network namespace */
  readonly own: readonly IpAddress[];
  /** next hops of the default routes, IPv4 and IPv6 */
  readonly gateways: readonly IpAddress[];
}

export async function readHostFacts(): Promise<HostFacts> {
  const own: IpAddress[] = [];
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) {
      const parsed = parseAddress(a.address.split('%')[0]!);
      if (parsed) own.push(parsed);
    }
  }
  return { own, gateways: [...(await ipv4Gateways()), ...(await ipv6Gateways())] };
}

/** /proc/net/route: the gateway of each route with destination 0.0.0.0/0, as a little-endian hex word. */
async function ipv4Gateways(): Promise<IpAddress[]> {
  const text = await readFile('/proc/net/route', 'utf8').catch(() => '');
  const out: IpAddress[] = [];
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 8 || f[1] !== '00000000' || f[7] !== '00000000') continue;
    const le = Number.parseInt(f[2]!, 16);
    if (!Number.isFinite(le) || le === 0) continue;
    const n = (((le & 0xff) << 24) | (((le >>> 8) & 0xff) << 16) | (((le >>> 16) & 0xff) << 8) | ((le >>> 24) & 0xff)) >>> 0;
    out.push(ipv4(n));
  }
  return out;
}

/** /proc/net/ipv6_route: the next hop of each route to ::/0. */
async function ipv6Gateways(): Promise<IpAddress[]> {
  const text = await readFile('/proc/net/ipv6_route', 'utf8').catch(() => '');
  const out: IpAddress[] = [];
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10 || f[0] !== '0'.repeat(32) || f[1] !== '00' || f[4] === '0'.repeat(32)) continue;
    const hex = f[4]!;
    const a = parseAddress(hex.match(/.{4}/g)!.join(':'));
    if (a) out.push(a);
  }
  return out;
}

/** A service this host needs, by the name it is configured with, and its addresses. */
export interface ServiceAddresses {
  readonly name: string;
  readonly addresses: readonly IpAddress[];
}

/**
 * Resolves the configured hosts (IP literals as they are, names through the system resolver). A name that does not
 * resolve yields nothing: it cannot be banned by address anyway, and the start must not wait on DNS.
 */
export async function resolveServices(hosts: readonly string[], timeoutMs = 2_000): Promise<ServiceAddresses[]> {
  return Promise.all(
    hosts
      .filter((h) => h !== '')
      .map(async (name) => {
        const literal = parseTarget(name.replace(/^\[(.*)\]$/, '$1'));
        if (literal) return { name, addresses: literal.kind === 'address' ? [literal] : [] };
        try {
          const found = await Promise.race([
            lookup(name, { all: true }),
            new Promise<never>((_, reject) => setTimeout(() => reject(new Error('timeout')), timeoutMs).unref()),
          ]);
          return { name, addresses: found.map((f) => parseAddress(f.address)).filter((a): a is IpAddress => a !== null) };
        } catch {
          return { name, addresses: [] };
        }
      }),
  );
}
