import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { classifyAddress, EgressPolicy, parseNetwork, type AddressClass } from './egress-policy';

describe('classifyAddress', () => {
  const cases: [string, AddressClass][] = [
    ['93.184.215.14', 'public'],
    ['8.8.8.8', 'public'],
    ['127.0.0.1', 'loopback'],
    ['127.255.0.9', 'loopback'],
    ['10.1.2.3', 'private'],
    ['172.16.0.1', 'private'],
    ['172.31.255.255', 'private'],
    ['172.32.0.1', 'public'],
    ['192.168.1.10', 'private'],
    ['100.64.0.1', 'private'],
    ['169.254.169.254', 'link-local'], // cloud metadata
    ['0.0.0.0', 'unspecified'],
    ['224.0.0.1', 'reserved'],
    ['255.255.255.255', 'reserved'],
    ['198.51.100.7', 'reserved'],
    ['::', 'unspecified'],
    ['::1', 'loopback'],
    ['[::1]', 'loopback'],
    ['fc00::1', 'private'],
    ['fd12:3456::1', 'private'],
    ['fe80::1%eth0', 'link-local'],
    ['ff02::1', 'reserved'],
    ['2001:db8::1', 'reserved'],
    ['2001:0:4136:e378::1', 'reserved'], // Teredo
    ['2606:4700:4700::1111', 'public'],
    ['::ffff:127.0.0.1', 'loopback'], // IPv4-mapped
    ['::ffff:a9fe:a9fe', 'link-local'], // 169.254.169.254, hex form
    ['64:ff9b::10.0.0.1', 'private'], // NAT64
    ['2002:c0a8:0101::1', 'private'], // 6to4 of 192.168.1.1
    ['2002:0808:0808::1', 'public'], // 6to4 of 8.8.8.8
    ['localhost', 'reserved'], // not an address: never connected to
  ];
  for (const [address, expected] of cases)
    it(`${address} is ${expected}`, () => assert.equal(classifyAddress(address), expected));
});

describe('EgressPolicy', () => {
  it('refuses every non-public address by default', () => {
    const policy = EgressPolicy.allowing();
    assert.equal(policy.refusal('127.0.0.1'), 'loopback');
    assert.equal(policy.refusal('169.254.169.254'), 'link-local');
    assert.equal(policy.refusal('::ffff:10.0.0.1'), 'private');
    assert.equal(policy.refusal('8.8.8.8'), undefined);
  });

  it('allows the configured networks only, IPv4-mapped addresses included', () => {
    const policy = EgressPolicy.allowing(['127.0.0.1/32', '10.20.0.0/16', 'fd00::/8']);
    assert.equal(policy.refusal('127.0.0.1'), undefined);
    assert.equal(policy.refusal('::ffff:127.0.0.1'), undefined);
    assert.equal(policy.refusal('127.0.0.2'), 'loopback');
    assert.equal(policy.refusal('10.20.30.40'), undefined);
    assert.equal(policy.refusal('10.21.0.1'), 'private');
    assert.equal(policy.refusal('fd00::5'), undefined);
    assert.equal(policy.refusal('169.254.169.254'), 'link-local');
  });

  it('refuses a network that is not CIDR notation', () => {
    assert.throws(() => EgressPolicy.allowing(['10.0.0.0/33']), /CIDR/);
    assert.throws(() => EgressPolicy.allowing(['intranet']), /CIDR/);
    assert.deepEqual(parseNetwork('192.168.0.1'), { address: '192.168.0.1', prefix: 32, family: 'ipv4' });
    assert.deepEqual(parseNetwork('::1/128'), { address: '::1', prefix: 128, family: 'ipv6' });
  });
});
