import { DmpError, OutboxErrorCode } from '@dmp/contracts';
import { BlockList, isIP } from 'node:net';

/**
 * Where webhooks may go. A webhook URL is written by a rule author, not by an operator: without a
 * policy it could reach the kernel's own admin API on loopback, the cloud's metadata service
 * (169.254.169.254), Redis or anything else on the private network. So a webhook may only connect to a
 * public (globally routable) address unless the address lies in a network that configuration allows
 * (KERNEL_WEBHOOK_ALLOW_NETWORKS, CIDRs). The check applies to the address actually connected to
 * (see egress-connector.ts), not to the host name, so DNS cannot point an allowed name elsewhere.
 */

/** What kind of address: only `public` is reachable without being allowed explicitly. */
export type AddressClass = 'public' | 'loopback' | 'private' | 'link-local' | 'unspecified' | 'reserved';

export class EgressRefusedError extends DmpError {
  constructor(
    readonly host: string,
    readonly address: string,
    readonly addressClass: AddressClass,
  ) {
    super(
      OutboxErrorCode.WebhookEgressRefused,
      `${host === address ? address : `${host} (${address})`} is a ${addressClass} address, not allowed for webhooks (KERNEL_WEBHOOK_ALLOW_NETWORKS)`,
    );
    this.name = 'EgressRefusedError';
  }
}

// IPv4 ranges that are not globally reachable (IANA special-purpose registry), most specific class first.
const V4_RANGES: [string, number, AddressClass][] = [
  ['0.0.0.0', 8, 'unspecified'],
  ['127.0.0.0', 8, 'loopback'],
  ['10.0.0.0', 8, 'private'],
  ['172.16.0.0', 12, 'private'],
  ['192.168.0.0', 16, 'private'],
  ['100.64.0.0', 10, 'private'], // carrier-grade NAT
  ['169.254.0.0', 16, 'link-local'], // includes cloud metadata services
  ['192.0.0.0', 24, 'reserved'],
  ['192.0.2.0', 24, 'reserved'],
  ['198.18.0.0', 15, 'reserved'],
  ['198.51.100.0', 24, 'reserved'],
  ['203.0.113.0', 24, 'reserved'],
  ['224.0.0.0', 4, 'reserved'], // multicast
  ['240.0.0.0', 4, 'reserved'], // future use, broadcast
];

/** The address's class; IPv6 forms that embed an IPv4 address (mapped, NAT64, 6to4) take its class. */
export function classifyAddress(address: string): AddressClass {
  const v4 = ipv4Of(address);
  if (v4 !== undefined) {
    for (const [base, bits, kind] of V4_RANGES) if (inV4(v4, base, bits)) return kind;
    return 'public';
  }
  const v6 = ipv6Bits(address);
  if (v6 === undefined) return 'reserved'; // not an IP address: never connect
  const prefix = (bits: number) => v6 >> BigInt(128 - bits);
  if (v6 === 0n) return 'unspecified';
  if (v6 === 1n) return 'loopback';
  if (prefix(7) === 0x7en) return 'private'; // fc00::/7 unique local
  if (prefix(10) === 0x3fan) return 'link-local'; // fe80::/10
  if (prefix(10) === 0x3fbn) return 'private'; // fec0::/10, deprecated site-local
  if (prefix(3) !== 1n) return 'reserved'; // outside 2000::/3 (global unicast): multicast, compat…
  if (prefix(32) === 0x20010db8n) return 'reserved'; // documentation
  if (prefix(23) === 0x2001n << 7n) return 'reserved'; // 2001::/23: IETF protocol assignments, Teredo
  return 'public';
}

export class EgressPolicy {
  private constructor(
    private readonly allowed: BlockList,
    readonly networks: readonly string[],
  ) {}

  /** Allows the given networks (`127.0.0.1/32`, `10.20.0.0/16`, `fd00::/8`…); throws on an invalid one. */
  static allowing(networks: readonly string[] = []): EgressPolicy {
    const list = new BlockList();
    for (const network of networks) {
      const parsed = parseNetwork(network);
      if (!parsed) throw new Error(`not a network in CIDR notation: ${network}`);
      list.addSubnet(parsed.address, parsed.prefix, parsed.family);
    }
    return new EgressPolicy(list, [...networks]);
  }

  /** Undefined if a webhook may connect to `address`, else the address's class. */
  refusal(address: string): AddressClass | undefined {
    const kind = classifyAddress(address);
    if (kind === 'public') return undefined;
    const v4 = ipv4Of(address);
    const plain = v4 === undefined ? stripZone(address) : v4;
    const family = v4 === undefined ? 'ipv6' : 'ipv4';
    if (isIP(plain) && this.allowed.check(plain, family)) return undefined;
    return kind;
  }
}

/** `a.b.c.d/n` or `x::/n` (a bare address is a single host). */
export function parseNetwork(
  text: string,
): { address: string; prefix: number; family: 'ipv4' | 'ipv6' } | undefined {
  const [address, bits, ...rest] = text.trim().split('/');
  const version = isIP(address);
  if (rest.length || version === 0) return undefined;
  const max = version === 4 ? 32 : 128;
  const prefix = bits === undefined ? max : /^\d{1,3}$/.test(bits) ? Number(bits) : NaN;
  if (!(prefix >= 0 && prefix <= max)) return undefined;
  return { address, prefix, family: version === 4 ? 'ipv4' : 'ipv6' };
}

// ---------------------------------------------------------------------------------------------

const stripZone = (address: string) => address.replace(/%.*$/, '').replace(/^\[|\]$/g, '');

/** The IPv4 address itself, or the one an IPv6 address embeds (::ffff:a.b.c.d, 64:ff9b::/96, 2002::/16). */
function ipv4Of(address: string): string | undefined {
  const plain = stripZone(address);
  if (isIP(plain) === 4) return plain;
  const v6 = ipv6Bits(plain);
  if (v6 === undefined) return undefined;
  const low32 = Number(v6 & 0xffffffffn);
  if (v6 >> 32n === 0xffffn || v6 >> 32n === 0x64ff9b0000000000000000n) return v4Text(low32);
  if (v6 >> 112n === 0x2002n) return v4Text(Number((v6 >> 80n) & 0xffffffffn));
  return undefined;
}

const v4Text = (n: number) => [24, 16, 8, 0].map((s) => (n >>> s) & 0xff).join('.');
const v4Number = (text: string) => text.split('.').reduce((n, part) => n * 256 + Number(part), 0);

function inV4(address: string, base: string, bits: number): boolean {
  const size = 2 ** (32 - bits);
  return Math.floor(v4Number(address) / size) === Math.floor(v4Number(base) / size);
}

/** An IPv6 address as a 128-bit number (zone and brackets ignored), or undefined if it is not one. */
function ipv6Bits(address: string): bigint | undefined {
  const plain = stripZone(address);
  if (isIP(plain) !== 6) return undefined;
  let text = plain;
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (dotted) {
    const n = v4Number(dotted[1]);
    text = `${text.slice(0, dotted.index)}${(n >>> 16).toString(16)}:${(n & 0xffff).toString(16)}`;
  }
  const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined];
  const headParts = head ? head.split(':') : [];
  const tailParts = tail ? tail.split(':') : [];
  const zeros = tail === undefined ? [] : Array<string>(8 - headParts.length - tailParts.length).fill('0');
  return [...headParts, ...zeros, ...tailParts].reduce((n, part) => (n << 16n) | BigInt(`0x${part}`), 0n);
}
