/**
 * libpq host lists: `host1:port1,host2:port2` in a URL's authority, `?host=a,b&port=p1,p2` in its
 * query, and `DB_HOST=a,b` with `DB_PORT=p1,p2`. Pure parsing; problems are sentences that name the
 * setting and the bad entry (never the password, which is not part of any host entry).
 */

/** One server of a host list. */
export interface HostAddress {
  readonly host: string;
  readonly port: number;
}

/** libpq's `load_balance_hosts`: `disable` tries hosts in the order given, `random` shuffles them. */
export const LOAD_BALANCE_HOSTS = ['disable', 'random'] as const;
export type LoadBalanceHosts = (typeof LOAD_BALANCE_HOSTS)[number];

/** `host:port`, with an IPv6 address in brackets (`[::1]:5432`). */
export function formatHost(address: HostAddress): string {
  return address.host.includes(':') ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
}

function quoteEntry(text: string): string {
  return JSON.stringify(text.length > 60 ? `${text.slice(0, 60)}...` : text);
}

/** A port entry as libpq reads it: digits only, 1–65535. */
function parsePort(text: string, label: string, problems: string[]): number | undefined {
  const trimmed = text.trim();
  const port = /^\d{1,5}$/.test(trimmed) ? Number(trimmed) : NaN;
  if (port >= 1 && port <= 65535) return port;
  problems.push(`${label} has the port ${quoteEntry(trimmed)}, which is not a port number; expected 1–65535.`);
  return undefined;
}

/**
 * Parses a libpq URI hostspec (`h1:5432,[::1]:5433,h3`): a host without a port gets `defaultPort`.
 * An empty entry or a bad port is a problem naming `label` and the entry.
 */
export function parseHostSpec(spec: string, defaultPort: number, label: string, problems: string[]): HostAddress[] {
  const hosts: HostAddress[] = [];
  spec.split(',').forEach((raw, index) => {
    const entry = raw.trim();
    const where = `${label} (host ${index + 1} of the list)`;
    const match = /^(\[[^\]]*\]|[^:[\]]*)(?::(.*))?$/.exec(entry);
    let host = match?.[1] ?? '';
    if (host.startsWith('[')) host = host.slice(1, -1);
    if (!match || host === '') {
      problems.push(`${where} is ${quoteEntry(entry)}, which is not host or host:port.`);
      return;
    }
    let decoded: string;
    try {
      decoded = decodeURIComponent(host);
    } catch {
      problems.push(`${where} is ${quoteEntry(entry)}, which is not a valid percent-encoded host.`);
      return;
    }
    const port = match[2] === undefined ? defaultPort : parsePort(match[2], where, problems);
    if (port !== undefined) hosts.push(Object.freeze({ host: decoded, port }));
  });
  return hosts;
}

/**
 * Pairs a comma-separated host list with a port list, as libpq does for `host=` and `port=`: one port
 * for every host, or exactly one port per host. `portsText` undefined gives every host `defaultPort`.
 */
export function zipHostsAndPorts(
  hostsText: string,
  portsText: string | undefined,
  defaultPort: number,
  labels: { hosts: string; ports: string },
  problems: string[],
): HostAddress[] {
  const names = hostsText.split(',').map((name) => name.trim());
  const empty = names.findIndex((name) => name === '');
  if (empty !== -1) {
    problems.push(`${labels.hosts} has an empty entry (host ${empty + 1} of the list); expected host names separated by commas.`);
    return [];
  }
  // libpq's host= (and PGHOST) takes names only; `db-a:5432` or `[::1]:5432` would be looked up as a
  // name and fail at connect time. (A bare IPv6 address such as ::1 has several colons and is a name.)
  const withPort = names.findIndex((name) => /^[^:]+:\d*$/.test(name) || name.startsWith('['));
  if (withPort !== -1) {
    problems.push(
      `${labels.hosts} entry ${JSON.stringify(names[withPort]!.slice(0, 60))} (host ${withPort + 1} of the list) is not a host name; give ports in ${labels.ports} (one for all hosts or one per host).`,
    );
    return [];
  }
  const portTexts = portsText === undefined ? [] : portsText.split(',');
  if (portTexts.length > 1 && portTexts.length !== names.length) {
    problems.push(
      `${labels.ports} lists ${portTexts.length} ports for ${names.length} hosts in ${labels.hosts}; give one port for all hosts or one per host.`,
    );
    return [];
  }
  const ports = portTexts.map((text, index) =>
    parsePort(text, portTexts.length > 1 ? `${labels.ports} (port ${index + 1} of the list)` : labels.ports, problems),
  );
  if (ports.some((port) => port === undefined)) return [];
  return names.map((host, index) =>
    Object.freeze({ host, port: ports.length === 0 ? defaultPort : ports[ports.length > 1 ? index : 0]! }),
  );
}

/**
 * Finds a host list in a postgres URL's authority (`postgres://u:p@h1:1,h2:2/db`), which WHATWG URL
 * and pg-connection-string cannot parse (node-postgres #2308). Returns the URL with the list replaced
 * by `localhost` (so the rest parses as usual) and the list itself; `hostSpec` is undefined when
 * the authority names one host.
 */
export function splitUrlHostList(text: string): { url: string; hostSpec: string | undefined; hasEmptyHost: boolean } {
  const scheme = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//.exec(text);
  if (!scheme) return { url: text, hostSpec: undefined, hasEmptyHost: false };
  const start = scheme[0].length;
  const rest = text.slice(start);
  const end = rest.search(/[/?#]/);
  const authority = end === -1 ? rest : rest.slice(0, end);
  const at = authority.lastIndexOf('@');
  const hostSpec = authority.slice(at + 1);
  // libpq takes `postgres://user:secret@/db?host=a,b`, an empty host after the user; a WHATWG URL
  // refuses it, so it gets the placeholder too (and the caller takes the host from ?host= or the default).
  const hasEmptyHost = at !== -1 && hostSpec === '';
  if (!hostSpec.includes(',') && !hasEmptyHost) return { url: text, hostSpec: undefined, hasEmptyHost };
  // A placeholder host: the list's entries are checked by parseHostSpec, with messages that name them.
  const url = text.slice(0, start) + authority.slice(0, at + 1) + 'localhost' + rest.slice(authority.length);
  return { url, hostSpec: hasEmptyHost ? undefined : hostSpec, hasEmptyHost };
}

/**
 * The order to try hosts in: as given, or shuffled for `load_balance_hosts=random` (libpq 16 shuffles
 * once per connection attempt; the pool shuffles once per search for a host).
 */
export function orderHosts<T>(hosts: readonly T[], loadBalance: LoadBalanceHosts, random: () => number = Math.random): T[] {
  const order = [...hosts];
  if (loadBalance !== 'random') return order;
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  return order;
}
