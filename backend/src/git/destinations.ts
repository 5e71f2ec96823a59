/**
 * Where the registry may make the backend connect (issue 10: SSRF). Users give repository URLs;
 * without a guard any user could make the backend open connections to internal hosts (the
 * database, the broker's API, a cloud metadata service) and read open/closed ports from the sync
 * errors. So, by default, a repository host must resolve only to public addresses:
 *
 * - refused: loopback, private (RFC 1918, IPv6 ULA), link-local (incl. 169.254.169.254 and other
 *   cloud metadata addresses), CGNAT, unspecified, multicast, broadcast, documentation and
 *   benchmarking ranges, IPv4-mapped forms of all of them;
 * - checked after DNS resolution, and the address that passed is the one used: git gets it pinned
 *   (`http.curloptResolve`, so a second DNS answer cannot swap it) and redirects off; the platform
 *   API clients resolve through the same check at connect time (every connection, every hop);
 * - hosts the operator trusts (PU_REGISTRY_ALLOWED_PRIVATE_HOSTS, or the admin's allow rules)
 *   may resolve to private addresses (an on-premises GitLab, the tests' local git server).
 *
 * Errors name the URL's host, never the addresses or the port state.
 */
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { BlockList, isIP } from 'node:net';
import { promisify } from 'node:util';
import { RepositoryRegistryError } from '../errors.js';

const FORBIDDEN = new BlockList();
for (const [network, prefix] of [
  ['0.0.0.0', 8], // "this network", unspecified
  ['10.0.0.0', 8],
  ['100.64.0.0', 10], // CGNAT
  ['127.0.0.0', 8],
  ['169.254.0.0', 16], // link-local, cloud metadata (169.254.169.254)
  ['172.16.0.0', 12],
  ['192.0.0.0', 24], // IETF protocol assignments
  ['192.0.2.0', 24], // documentation
  ['192.88.99.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15], // benchmarking
  ['198.51.100.0', 24],
  ['203.0.113.0', 24],
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4], // reserved, broadcast
] as const) {
  FORBIDDEN.addSubnet(network, prefix, 'ipv4');
}
for (const [network, prefix] of [
  ['::', 128],
  ['::1', 128],
  ['fc00::', 7], // unique local
  ['fe80::', 10], // link-local
  ['fec0::', 10], // site-local (deprecated)
  ['ff00::', 8], // multicast
  ['2001:db8::', 32], // documentation
  ['64:ff9b::', 96], // NAT64 of anything, including private IPv4
  ['fd00:ec2::', 32], // AWS metadata over IPv6 (inside fc00::/7 already; kept explicit)
] as const) {
  FORBIDDEN.addSubnet(network, prefix, 'ipv6');
}

/** True for every address the backend must not connect to on a user's behalf. */
export function isForbiddenAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 0) return true;
  if (family === 6) {
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
    if (mapped) return FORBIDDEN.check(mapped[1]!, 'ipv4');
    return FORBIDDEN.check(address, 'ipv6');
  }
  return FORBIDDEN.check(address, 'ipv4');
}

export class DestinationRefusedError extends RepositoryRegistryError {
  constructor(host: string) {
    super(`The repository host ${host} is not reachable from this instance: it resolves to a loopback, private, link-local or metadata address (an administrator may allow the host)`);
  }
}

export interface CheckedDestination {
  readonly host: string;
  readonly port: number;
  /** The address that passed; connections must use it. */
  readonly address: string;
  readonly family: 4 | 6;
}

export type Lookup = (hostname: string) => Promise<LookupAddress[]>;

const defaultLookup: Lookup = async (hostname) => promisify(dnsLookup)(hostname, { all: true, verbatim: true });

const DEFAULT_PORTS: Record<string, number> = { 'http:': 80, 'https:': 443, 'git:': 9418, 'ssh:': 22 };

/** Hosts that may resolve to private addresses: exact names (`host` or `host:port`) and domains (with subdomains). */
export interface TrustedHosts {
  readonly exact: ReadonlySet<string>;
  readonly domains: readonly string[];
}

export class DestinationGuard {
  constructor(
    private readonly trustedHosts: () => Promise<TrustedHosts> | TrustedHosts,
    private readonly lookup: Lookup = defaultLookup,
  ) {}

  async isTrusted(host: string, port?: number): Promise<boolean> {
    const trusted = await this.trustedHosts();
    const name = host.toLowerCase().replace(/^\[|\]$/g, '');
    if (trusted.exact.has(name) || (port !== undefined && trusted.exact.has(`${name}:${port}`))) return true;
    return trusted.domains.some((domain) => name === domain || name.endsWith(`.${domain}`));
  }

  /**
   * Resolves the URL's host and returns the first usable address; throws DestinationRefusedError
   * when every address is forbidden (or, for safety, when any of them is: a host that answers
   * with a mix is refused). `null` for URLs without a network host (`file://`).
   */
  async check(urlText: string): Promise<CheckedDestination | null> {
    let url: URL;
    try {
      url = new URL(urlText);
    } catch {
      throw new RepositoryRegistryError('Repo URL is not correct');
    }
    if (url.protocol === 'file:') return null;
    const host = url.hostname.toLowerCase().replace(/^\[|\]$/g, '');
    const port = url.port ? Number(url.port) : (DEFAULT_PORTS[url.protocol] ?? 443);
    const trusted = await this.isTrusted(host, port);
    let addresses: LookupAddress[];
    if (isIP(host)) addresses = [{ address: host, family: isIP(host) as 4 | 6 }];
    else {
      try {
        addresses = await this.lookup(host);
      } catch {
        throw new RepositoryRegistryError(`The repository host ${host} does not resolve`);
      }
    }
    if (addresses.length === 0) throw new RepositoryRegistryError(`The repository host ${host} does not resolve`);
    if (!trusted && addresses.some((a) => isForbiddenAddress(a.address))) throw new DestinationRefusedError(host);
    const first = addresses[0]!;
    return { host, port, address: first.address, family: first.family === 6 ? 6 : 4 };
  }

  /**
   * A `lookup` for `net.connect` / undici's `connect.lookup`: resolves, refuses forbidden
   * addresses of untrusted hosts. Used by the platform API clients, so every connection (and
   * every redirect they would follow) is checked when it is made.
   */
  connectLookup(): (hostname: string, options: object, callback: (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void) => void {
    return (hostname, options, callback) => {
      const host = hostname.toLowerCase();
      const all = (options as { all?: boolean }).all === true;
      Promise.all([this.lookup(host), this.isTrusted(host)])
        .then(([addresses, trusted]) => {
          if (!trusted && addresses.some((a) => isForbiddenAddress(a.address))) {
            const refused = Object.assign(new Error(`connection to ${host} refused by the destination guard`), { code: 'EDESTINATION' }) as NodeJS.ErrnoException;
            callback(refused, '', 0);
            return;
          }
          if (all) callback(null, addresses);
          else callback(null, addresses[0]!.address, addresses[0]!.family);
        })
        .catch((err: NodeJS.ErrnoException) => callback(err, '', 0));
    };
  }
}
