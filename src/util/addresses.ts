// IP address classes the server makes decisions on: loopback (open mode may only listen and be
// reached there), and "not public" (loopback, private, link-local, shared, documentation,
// multicast...: where `play` must not fetch from unless the configuration allows it). Decisions
// are made on resolved addresses, never on host names (`127.lan` may resolve anywhere).
import { lookup } from 'node:dns/promises';
import { BlockList, isIP } from 'node:net';

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');

/** Every range of RFC 6890's special-purpose registries that is not globally reachable. */
const NON_PUBLIC = new BlockList();
for (const [net, bits] of [
  ['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16],
  ['172.16.0.0', 12], ['192.0.0.0', 24], ['192.0.2.0', 24], ['192.88.99.0', 24], ['192.168.0.0', 16],
  ['198.18.0.0', 15], ['198.51.100.0', 24], ['203.0.113.0', 24], ['224.0.0.0', 4], ['240.0.0.0', 4],
] as const) NON_PUBLIC.addSubnet(net, bits, 'ipv4');
for (const [net, bits] of [
  ['::', 128], ['::1', 128], ['64:ff9b:1::', 48], ['100::', 64], ['2001::', 23], ['2001:db8::', 32],
  ['2002::', 16], ['fc00::', 7], ['fe80::', 10], ['fec0::', 10], ['ff00::', 8],
] as const) NON_PUBLIC.addSubnet(net, bits, 'ipv6');

/** The IPv4 address inside an IPv4-mapped or -compatible IPv6 one (::ffff:10.0.0.1), if any. */
function embeddedIpv4(ip: string): string | undefined {
  const m = /^(?:0*:)*:(?:ffff:)?(\d+\.\d+\.\d+\.\d+)$/i.exec(ip) ?? /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/i.exec(ip);
  if (!m) return undefined;
  if (m[2] === undefined) return m[1];
  const hi = parseInt(m[1]!, 16);
  const lo = parseInt(m[2], 16);
  return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
}

function classify(list: BlockList, ip: string): boolean {
  const family = isIP(ip);
  if (family === 0) return false;
  if (family === 6) {
    const v4 = embeddedIpv4(ip);
    if (v4 !== undefined) return list.check(v4, 'ipv4');
    return list.check(ip, 'ipv6');
  }
  return list.check(ip, 'ipv4');
}

/** 127.0.0.0/8, ::1 and IPv4-mapped loopback. False for names and anything else. */
export function isLoopbackIp(ip: string): boolean {
  return classify(LOOPBACK, stripBrackets(ip));
}

/** Whether an address is globally reachable (not loopback, private, link-local, reserved...). */
export function isPublicIp(ip: string): boolean {
  const a = stripBrackets(ip);
  return isIP(a) !== 0 && !classify(NON_PUBLIC, a);
}

function stripBrackets(s: string): string {
  return s.startsWith('[') && s.endsWith(']') ? s.slice(1, -1) : s;
}

/** Every address a host name (or literal) resolves to. Rejects when it resolves to nothing. */
export async function resolveAll(host: string): Promise<string[]> {
  const h = stripBrackets(host);
  if (isIP(h) !== 0) return [h];
  const found = await lookup(h, { all: true, verbatim: true });
  if (found.length === 0) throw new Error(`${host} resolves to no address`);
  return found.map((a) => a.address);
}

/** Whether a host name or address resolves to loopback addresses only. */
export async function resolvesToLoopbackOnly(host: string): Promise<boolean> {
  try {
    return (await resolveAll(host)).every(isLoopbackIp);
  } catch {
    return false;
  }
}

/**
 * A policy over addresses: public ones pass, others only when listed in `allow` (addresses or
 * CIDR networks, as the configuration gives them).
 */
export function addressPolicy(allow: readonly string[]): (ip: string) => boolean {
  const extra = new BlockList();
  for (const entry of allow) {
    const [addr, bits] = entry.split('/');
    const family = isIP(addr ?? '') === 6 ? 'ipv6' : 'ipv4';
    if (bits === undefined) extra.addAddress(addr!, family);
    else extra.addSubnet(addr!, Number(bits), family);
  }
  return (ip: string) => {
    const a = stripBrackets(ip);
    if (isIP(a) === 0) return false;
    if (isPublicIp(a)) return true;
    const v4 = isIP(a) === 6 ? embeddedIpv4(a) : undefined;
    return v4 !== undefined ? extra.check(v4, 'ipv4') : extra.check(a, isIP(a) === 6 ? 'ipv6' : 'ipv4');
  };
}
