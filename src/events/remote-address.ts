import { parseAddress, type IpAddress } from '../net/ip.js';

/**
 * Extracts the address from a security event's `RemoteAddress`, written by Asterisk as
 * `IPV4/UDP/198.18.0.11/5060` or `IPV6/UDP/fd00::66/5060`: IPv6 has no brackets and holds colons, so the address
 * is whatever lies between the second and the last `/`. Some services leave the transport out
 * (`IPV4/198.18.0.11/5060`) or empty (`IPV4//198.18.0.11/5060`). The port is ignored on purpose: over TCP it is
 * the client's ephemeral port, new with every connection.
 */
export function parseRemoteAddress(value: string): IpAddress | null {
  if (value.length > 128) return null;
  const parts = value.split('/');
  const family = parts[0]?.toUpperCase();
  if (family !== 'IPV4' && family !== 'IPV6') return null;
  const candidate = parts.length >= 4 ? parts.slice(2, -1).join('/') : parts.length === 3 ? parts[1] : undefined;
  if (candidate === undefined) return null;
  const addr = parseAddress(candidate);
  if (!addr) return null;
  // IPv4-mapped IPv6 folds to IPv4 in the parser; any other mismatch between the tag and the address is forged
  if (family === 'IPV4' && addr.family !== 4) return null;
  return addr;
}
