// A Next.js App Router route handler (or any Vercel function) that forwards requests to the
// origin with a signed client-IP header. Save it as `app/api/[...path]/route.js` (or `.ts`),
// copy `tower-bouncer-signer.mjs` next to it, and set two environment variables:
//
//   CLIENT_IP_SIGNING_KEY_ID   e.g. 2026-11  (the kid; the origin must know it)
//   CLIENT_IP_SIGNING_SECRET   32+ random bytes in base64url: openssl rand 32 | basenc --base64url
//
// The origin (Rust) runs:
//   SignedHeader::new(HeaderName::from_static("x-signed-client-ip"),
//                     SigningKeys::parse_kid_secrets(["2026-11:<the same secret>"])?)
//       .audience("api.example.com")?
// or, with the example server: --source signed:x-signed-client-ip --signing-key 2026-11:<secret>

import { createSigner } from './tower-bouncer-signer.mjs';

export const runtime = 'edge'; // works on 'nodejs' (Node >= 18) too

const ORIGIN = 'https://api.example.com';
const SIGNED_HEADER = 'x-signed-client-ip';

// Imported once per instance, reused by every request.
const signerPromise = createSigner({
  keyId: process.env.CLIENT_IP_SIGNING_KEY_ID,
  secret: process.env.CLIENT_IP_SIGNING_SECRET,
  audience: new URL(ORIGIN).host, // binds the value to this origin; the origin sets the same
});

/**
 * The client's address as Vercel saw it.
 *
 * Which header to trust on Vercel: `x-forwarded-for`. Vercel's edge overwrites it with the
 * address of the client that connected to Vercel (a value sent by the client is not passed
 * through), and `x-real-ip` carries the same address. Do not take the leftmost entry of an
 * `x-forwarded-for` on a platform that appends instead of overwriting. If another proxy (for
 * example Cloudflare) sits in front of Vercel, Vercel's own edge sees that proxy's address:
 * use Vercel's verified-proxy support for that provider so `x-forwarded-for` holds the user's
 * address again, rather than trusting a header any client could send to your deployment URL.
 */
function clientIp(request) {
  const forwarded = request.headers.get('x-forwarded-for');
  // Vercel writes a single address; take the first entry defensively and trim it.
  const ip = forwarded?.split(',')[0]?.trim() || request.headers.get('x-real-ip')?.trim();
  return ip || null;
}

async function forward(request) {
  const ip = clientIp(request);
  if (!ip) return new Response('client address unknown', { status: 400 });

  const signer = await signerPromise;
  let signed;
  try {
    signed = await signer.sign(ip);
  } catch {
    return new Response('client address unusable', { status: 400 });
  }

  const url = new URL(request.url);
  const target = new URL(url.pathname.replace(/^\/api/, '') + url.search, ORIGIN);
  const headers = new Headers(request.headers);
  headers.delete('host');
  // Replace, never append: a client-sent value of this header must not reach the origin.
  headers.set(SIGNED_HEADER, signed);

  return fetch(target, {
    method: request.method,
    headers,
    body: ['GET', 'HEAD'].includes(request.method) ? undefined : request.body,
    duplex: 'half', // required by fetch when streaming a request body
    redirect: 'manual',
  });
}

export { forward as GET, forward as POST, forward as PUT, forward as PATCH, forward as DELETE };
