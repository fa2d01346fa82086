import { createHmac } from 'node:crypto';
import { generateSecret, parseSecret, sign } from '../dist/signature.js';

/** One secret per run: the service gets the whsec_ form, the bench signs with the decoded key. */
export function makeSecret() {
  const secret = generateSecret();
  return { secret, key: parseSecret(secret) };
}

let messageCounter = 0;

/** A Standard Webhooks request as hosting_taskd sends it; each call has its own webhook-id. */
export function signedTask(key, nid, rid, now = Date.now()) {
  const body = JSON.stringify({ nid, rid });
  messageCounter += 1;
  const id = `msg_bench_${process.pid}_${messageCounter}`;
  const timestamp = Math.floor(now / 1000);
  return {
    body,
    headers: {
      'content-type': 'application/json',
      'webhook-id': id,
      'webhook-timestamp': String(timestamp),
      'webhook-signature': sign(key, id, timestamp, body),
    },
  };
}

/** What adnanh/webhook's payload-hmac-sha256 rule checks: a hex HMAC of the raw body, GitHub style. */
export function hexSignedTask(secret, nid, rid) {
  const body = JSON.stringify({ nid, rid });
  const digest = createHmac('sha256', secret).update(body).digest('hex');
  return { body, headers: { 'content-type': 'application/json', 'x-signature': `sha256=${digest}` } };
}
