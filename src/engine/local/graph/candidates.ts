// Announced addresses (1:1 NAT, cloud hosts): host candidates on private interface addresses
// are announced with the public address instead, keeping the port the NAT forwards.

const HOST = /^(candidate:\S+ \d+ \S+ \d+ )(\S+)( \d+ typ host.*)$/;

export function candidateRewriter(announced: readonly string[]): (candidate: string) => string[] {
  if (announced.length === 0) return (c) => [c];
  return (c) => {
    const m = HOST.exec(c);
    // Loopback candidates stay as they are: they serve clients on this machine.
    if (!m || m[2]!.startsWith('127.')) return [c];
    return announced.map((ip, i) => `${m[1]!.replace(/^candidate:(\S+)/, (_, f: string) => `candidate:${f}${i > 0 ? `a${i}` : ''}`)}${ip}${m[3]}`);
  };
}
