// tower-bouncer signed client-IP header, wire format version 1: the JavaScript signer.
//
// Dependency-free, WebCrypto only: runs on Node >= 18, Vercel (Edge and Node functions),
// Cloudflare Workers, Deno and browsers. It produces byte for byte what the Rust `Signer`
// produces; the origin verifies it with `tower_bouncer::client_ip::SignedHeader`.
//
//   import { signClientIp } from './tower-bouncer-signer.mjs';
//   const value = await signClientIp({
//     ip: '203.0.113.7',
//     keyId: '2026-11',
//     secret: process.env.CLIENT_IP_SIGNING_SECRET, // base64url, 32+ bytes once decoded
//     audience: 'api.example.com',                  // optional; must match the origin's
//   });
//   headers.set('x-signed-client-ip', value);
//
// Wire format (the full specification is in the Rust docs of `SignedHeader`):
//   value     = "v1." kid "." timestamp "." base64url(address) "." base64url(tag)
//   kid       = 1 to 32 of A-Z a-z 0-9 _ -
//   timestamp = Unix seconds, decimal, no leading zero
//   address   = 4 bytes (IPv4) or 16 bytes (IPv6); ::ffff:a.b.c.d is sent as IPv4
//   tag       = HMAC-SHA256(secret, "TBIP" | 0x01 | family (4|6) | address
//                                   | timestamp u64 big-endian | len | kid | len | audience)
// base64url is RFC 4648 section 5 without padding.

const KEY_ID = /^[A-Za-z0-9_-]{1,32}$/;
const AUDIENCE = /^[\x21-\x7e]{1,255}$/;
const MIN_SECRET_BYTES = 32;
const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const encoder = new TextEncoder();

/** WebCrypto's SubtleCrypto: global everywhere but Node 18, where it lives in node:crypto. */
async function subtleCrypto() {
  if (globalThis.crypto?.subtle) return globalThis.crypto.subtle;
  const nodeCrypto = 'node:crypto'; // a variable, so edge bundlers leave it alone
  const { webcrypto } = await import(/* webpackIgnore: true */ nodeCrypto);
  return webcrypto.subtle;
}

/** Bytes → base64url without padding. */
export function base64urlEncode(bytes) {
  let out = '';
  let index = 0;
  for (; index + 3 <= bytes.length; index += 3) {
    const n = (bytes[index] << 16) | (bytes[index + 1] << 8) | bytes[index + 2];
    out += ALPHABET[n >> 18] + ALPHABET[(n >> 12) & 63] + ALPHABET[(n >> 6) & 63] + ALPHABET[n & 63];
  }
  const rest = bytes.length - index;
  if (rest === 1) {
    const n = bytes[index] << 16;
    out += ALPHABET[n >> 18] + ALPHABET[(n >> 12) & 63];
  } else if (rest === 2) {
    const n = (bytes[index] << 16) | (bytes[index + 1] << 8);
    out += ALPHABET[n >> 18] + ALPHABET[(n >> 12) & 63] + ALPHABET[(n >> 6) & 63];
  }
  return out;
}

/**
 * base64url → bytes, strictly: the URL-safe alphabet only, padding optional but correct,
 * unused trailing bits zero. Throws on anything else.
 */
export function base64urlDecode(text) {
  if (typeof text !== 'string') throw new TypeError('base64url input must be a string');
  let body = text;
  const padded = /^[A-Za-z0-9_-]*(={0,2})$/.exec(text);
  if (!padded) throw new TypeError('not base64url');
  if (padded[1]) {
    if (text.length % 4 !== 0) throw new TypeError('not base64url: bad padding');
    body = text.slice(0, text.length - padded[1].length);
  }
  if (body.length % 4 === 1) throw new TypeError('not base64url: bad length');
  const out = new Uint8Array(Math.floor((body.length * 6) / 8));
  let bits = 0;
  let buffer = 0;
  let at = 0;
  for (const char of body) {
    buffer = (buffer << 6) | ALPHABET.indexOf(char);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[at++] = (buffer >> bits) & 0xff;
    }
  }
  if ((buffer & ((1 << bits) - 1)) !== 0) throw new TypeError('not base64url: trailing bits');
  if (padded[1] && padded[1].length !== (4 - (body.length % 4)) % 4) {
    throw new TypeError('not base64url: bad padding');
  }
  return out;
}

function parseIpv4(text) {
  const parts = text.split('.');
  if (parts.length !== 4) return null;
  const bytes = new Uint8Array(4);
  for (let index = 0; index < 4; index++) {
    const part = parts[index];
    if (!/^(0|[1-9][0-9]{0,2})$/.test(part)) return null;
    const value = Number(part);
    if (value > 255) return null;
    bytes[index] = value;
  }
  return bytes;
}

function parseIpv6(text) {
  if (!/^[0-9A-Fa-f:.]+$/.test(text)) return null;
  const halves = text.split('::');
  if (halves.length > 2) return null;
  const groupsOf = (half) => {
    if (half === '') return [];
    const pieces = half.split(':');
    const groups = [];
    for (let index = 0; index < pieces.length; index++) {
      const piece = pieces[index];
      if (index === pieces.length - 1 && piece.includes('.')) {
        const v4 = parseIpv4(piece);
        if (!v4) return null;
        groups.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]);
      } else if (/^[0-9A-Fa-f]{1,4}$/.test(piece)) {
        groups.push(parseInt(piece, 16));
      } else {
        return null;
      }
    }
    return groups;
  };
  const head = groupsOf(halves[0]);
  if (!head) return null;
  let groups;
  if (halves.length === 1) {
    if (head.length !== 8) return null;
    groups = head;
  } else {
    const tail = groupsOf(halves[1]);
    // An embedded IPv4 address may only end the address.
    if (!tail || halves[0].includes('.')) return null;
    if (head.length + tail.length > 7) return null;
    groups = [...head, ...new Array(8 - head.length - tail.length).fill(0), ...tail];
  }
  const bytes = new Uint8Array(16);
  groups.forEach((group, index) => {
    bytes[2 * index] = group >> 8;
    bytes[2 * index + 1] = group & 0xff;
  });
  return bytes;
}

/**
 * Parses an IP address strictly and returns its canonical bytes: 4 for IPv4 (including an
 * IPv4-mapped IPv6 address such as `::ffff:192.0.2.1`), 16 for IPv6. No ports, brackets, zone
 * ids, whitespace or leading zeros in IPv4 octets. Throws on anything else.
 */
export function parseIp(text) {
  if (typeof text !== 'string') throw new TypeError('ip must be a string');
  const bytes = text.includes(':') ? parseIpv6(text) : parseIpv4(text);
  if (!bytes) throw new TypeError('not an IP address');
  if (bytes.length === 16 && bytes.slice(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff) {
    return bytes.slice(12);
  }
  return bytes;
}

function secretBytes(secret) {
  const bytes = typeof secret === 'string' ? base64urlDecode(secret) : new Uint8Array(secret);
  if (bytes.length < MIN_SECRET_BYTES) {
    throw new TypeError(`the secret must be at least ${MIN_SECRET_BYTES} bytes`);
  }
  return bytes;
}

/**
 * Imports the key once and returns `{ keyId, sign(ip, now?) }`; `sign` resolves to the header
 * value. Reuse it across requests (module scope) to import the key once per instance.
 *
 * @param {{ keyId: string, secret: string | Uint8Array, audience?: string }} options
 *   `secret` in base64url (or raw bytes), at least 32 bytes; `audience` 1 to 255 visible ASCII
 *   characters, the same as the origin's `SignedHeader::audience` (or absent on both sides).
 */
export async function createSigner({ keyId, secret, audience }) {
  if (typeof keyId !== 'string' || !KEY_ID.test(keyId)) {
    throw new TypeError('keyId must be 1 to 32 characters of A-Z a-z 0-9 _ -');
  }
  if (audience !== undefined && audience !== null && (typeof audience !== 'string' || !AUDIENCE.test(audience))) {
    throw new TypeError('audience must be 1 to 255 visible ASCII characters');
  }
  const subtle = await subtleCrypto();
  const key = await subtle.importKey(
    'raw',
    secretBytes(secret),
    { name: 'HMAC', hash: 'SHA-256' },
    false,
    ['sign'],
  );
  const kidBytes = encoder.encode(keyId);
  const audienceBytes = audience ? encoder.encode(audience) : new Uint8Array(0);

  async function sign(ip, now = Math.floor(Date.now() / 1000)) {
    if (!Number.isSafeInteger(now) || now < 0) {
      throw new TypeError('now must be a non-negative integer number of Unix seconds');
    }
    const address = parseIp(ip);
    const message = new Uint8Array(4 + 1 + 1 + address.length + 8 + 1 + kidBytes.length + 1 + audienceBytes.length);
    let at = 0;
    const put = (bytes) => {
      message.set(bytes, at);
      at += bytes.length;
    };
    put(encoder.encode('TBIP'));
    put([1, address.length === 4 ? 4 : 6]);
    put(address);
    const time = new Uint8Array(8);
    new DataView(time.buffer).setBigUint64(0, BigInt(now), false);
    put(time);
    put([kidBytes.length]);
    put(kidBytes);
    put([audienceBytes.length]);
    put(audienceBytes);
    const tag = new Uint8Array(await subtle.sign('HMAC', key, message));
    return `v1.${keyId}.${now}.${base64urlEncode(address)}.${base64urlEncode(tag)}`;
  }

  return { keyId, sign };
}

/**
 * The signed header value for one client.
 *
 * @param {{ ip: string, keyId: string, secret: string | Uint8Array, audience?: string,
 *           now?: number }} options  `now` in Unix seconds (default: the current time).
 * @returns {Promise<string>}
 */
export async function signClientIp({ ip, keyId, secret, audience, now }) {
  const signer = await createSigner({ keyId, secret, audience });
  return signer.sign(ip, now ?? Math.floor(Date.now() / 1000));
}
