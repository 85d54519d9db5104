import { lookup as dnsLookup, type LookupAddress, type LookupAllOptions } from 'node:dns';
import { isIP } from 'node:net';
import { buildConnector } from 'undici';
import { EgressRefusedError, type EgressPolicy } from '../egress/egress-policy';

/** Resolves a host name to all its addresses (dns.lookup by default: the system resolver, /etc/hosts). */
export type Resolver = (
  hostname: string,
  options: LookupAllOptions,
  callback: (error: NodeJS.ErrnoException | null, addresses: LookupAddress[]) => void,
) => void;

type LookupCallback = (
  error: NodeJS.ErrnoException | null,
  address: string | LookupAddress[],
  family?: number,
) => void;

/**
 * An undici connector that enforces the egress policy on the address it connects to. A host name is
 * resolved once, inside the socket's own lookup: the addresses the policy refuses are dropped and the
 * socket connects to one that was checked — a second resolution (DNS rebinding) never happens. An IP
 * literal is checked before connecting. A refusal fails the connection with EgressRefusedError
 * (DMP_ERR_WEBHOOK_EGRESS), which is not retried. Redirects are never followed (undici's request does
 * not follow them), so a 3xx cannot lead anywhere else either.
 */
export function egressConnector(
  policy: EgressPolicy,
  options: buildConnector.BuildOptions = {},
  resolve: Resolver = dnsLookup,
): buildConnector.connector {
  const lookup = (hostname: string, lookupOptions: { all?: boolean }, callback: LookupCallback) => {
    resolve(hostname, { ...lookupOptions, all: true }, (error, addresses) => {
      if (error) return callback(error, []);
      const usable = addresses.filter((a) => policy.refusal(a.address) === undefined);
      if (usable.length === 0) {
        const first = addresses[0]?.address ?? '';
        return callback(new EgressRefusedError(hostname, first, policy.refusal(first) ?? 'reserved'), []);
      }
      if (lookupOptions.all) callback(null, usable);
      else callback(null, usable[0].address, usable[0].family);
    });
  };
  const connect = buildConnector({ ...options, lookup });
  return (connectOptions, callback) => {
    const host = connectOptions.hostname.replace(/^\[|\]$/g, '');
    if (isIP(host)) {
      const refused = policy.refusal(host);
      if (refused) return callback(new EgressRefusedError(host, host, refused), null);
    }
    connect(connectOptions, callback);
  };
}
