// Prints, as one JSON document, header values minted by the JavaScript signer for a fixed set
// of cases. `tests/js_signer.rs` runs it with `node` and checks every value with the Rust
// verifier (and against the Rust signer, byte for byte). The expected outcomes live in the
// Rust test, not here.
//
//   node examples/signers/test-vectors.mjs

import { signClientIp, parseIp, base64urlDecode } from './tower-bouncer-signer.mjs';

const NOW = 1790000000;
// 32-byte secrets in base64url: "new-secret-new-secret-new-secret" and the old one.
const NEW_SECRET = 'bmV3LXNlY3JldC1uZXctc2VjcmV0LW5ldy1zZWNyZXQ';
const OLD_SECRET = 'b2xkLXNlY3JldC1vbGQtc2VjcmV0LW9sZC1zZWNyZXQ';
const WRONG_SECRET = 'd3Jvbmctd3Jvbmctd3Jvbmctd3Jvbmctd3Jvbmctd3I';

const base = { keyId: 'new', secret: NEW_SECRET, now: NOW };
const cases = [
  { name: 'valid-v4', ...base, ip: '203.0.113.7' },
  { name: 'valid-v6', ...base, ip: '2001:db8:85a3::8a2e:370:7334' },
  { name: 'mapped-v6', ...base, ip: '::ffff:198.51.100.9' },
  { name: 'audience', ...base, ip: '203.0.113.7', audience: 'api.example.com' },
  { name: 'rotated-old-key', ...base, keyId: 'old', secret: OLD_SECRET, ip: '192.0.2.1' },
  { name: 'expired', ...base, ip: '203.0.113.7', now: NOW - 61 },
  { name: 'within-window', ...base, ip: '203.0.113.7', now: NOW - 60 },
  { name: 'future', ...base, ip: '203.0.113.7', now: NOW + 6 },
  { name: 'wrong-key', ...base, secret: WRONG_SECRET, ip: '203.0.113.7' },
  { name: 'unknown-kid', ...base, keyId: 'stranger', ip: '203.0.113.7' },
  { name: 'tampered-ip', ...base, ip: '203.0.113.7', tamper: 'ip' },
  { name: 'tampered-time', ...base, ip: '203.0.113.7', tamper: 'time' },
  { name: 'tampered-tag', ...base, ip: '203.0.113.7', tamper: 'tag' },
];

// Spellings the JS parser must read exactly as Rust's `IpAddr::from_str` does.
const IP_SPELLINGS = [
  '0.0.0.0', '255.255.255.255', '192.0.2.1',
  '::', '::1', '1::', '2001:db8::1', '2001:DB8::1', '2001:0db8:0000:0000:0000:0000:0000:0001',
  '1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7::', '::2:3:4:5:6:7:8', '1:2:3:4:5:6:1.2.3.4',
  '::ffff:1.2.3.4', '::FFFF:1.2.3.4', '::ffff:102:304', '0:0:0:0:0:ffff:192.0.2.1',
  '64:ff9b::192.0.2.33', '::1.2.3.4', 'fe80::1', 'ff02::1', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff',
];
// Inputs both parsers must refuse.
const IP_REJECTS = [
  '', ' ', '1.2.3', '1.2.3.4.5', '256.1.1.1', '01.2.3.4', '1.2.3.-4', ' 1.2.3.4', '1.2.3.4 ',
  '1.2.3.4:80', '0x1.2.3.4', '1.2.3.4/32', '1:2:3:4:5:6:7:8:9', '1:2:3:4:5:6:7', '1::2::3',
  ':::', '12345::', ':1::', '1::2:', 'fe80::1%eth0', '[::1]', '::ffff:1.2.3.256',
  '::ffff:01.2.3.4', 'g::1', '1.2.3.4::', '1:2:3:4:5:6:7:1.2.3.4', '::1.2.3', '1:2:3:4:5:6:7:8::',
];

function tamper(value, what) {
  const fields = value.split('.');
  if (what === 'ip') fields[3] = 'ywBxCA'; // 203.0.113.8
  if (what === 'time') fields[2] = String(Number(fields[2]) - 1);
  if (what === 'tag') fields[4] = (fields[4][0] === 'A' ? 'B' : 'A') + fields[4].slice(1);
  return fields.join('.');
}

const signed = [];
for (const { tamper: what, ...input } of cases) {
  let value = await signClientIp(input);
  if (what) value = tamper(value, what);
  signed.push({
    name: input.name,
    ip: input.ip,
    keyId: input.keyId,
    secret: input.secret,
    audience: input.audience ?? null,
    now: input.now,
    tampered: Boolean(what),
    value,
  });
}

const spellings = [];
for (const ip of IP_SPELLINGS) {
  spellings.push({ ip, value: await signClientIp({ ...base, ip }) });
}

const rejects = [];
for (const ip of IP_REJECTS) {
  let refused = false;
  try {
    parseIp(ip);
  } catch {
    refused = true;
  }
  rejects.push({ ip, refused });
}

// The JS base64url decoder must read (or refuse) secrets exactly as the Rust one does.
const BASE64_TEXTS = [
  '', 'A', 'ab', 'abc', 'abcd', 'ab==', 'abc=', 'ab=', 'abc==', 'ab=c', '====', 'ab8', 'ab9',
  'a+b/', 'a b', 'bmV3', NEW_SECRET, `${NEW_SECRET}=`, `${NEW_SECRET}==`, `${NEW_SECRET.slice(0, -1)}R`,
];
const decodes = BASE64_TEXTS.map((text) => {
  try {
    return { text, hex: Array.from(base64urlDecode(text), (b) => b.toString(16).padStart(2, '0')).join('') };
  } catch {
    return { text, hex: null };
  }
});

console.log(JSON.stringify({ now: NOW, signed, spellings, rejects, decodes }, null, 1));
