import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { generateSecret, parseSecret, sign, signedHeaders, verify } from '../src/signature.js';
import { fixture } from './helpers.js';

interface Vector {
  name: string;
  secret: string;
  msgId: string;
  timestamp: number;
  payload: string;
  signature: string;
  valid: boolean;
}
const { vectors } = JSON.parse(readFileSync(fixture('signature-vectors.json'), 'utf8')) as { vectors: Vector[] };

describe('signature vectors shared with the Drupal module', () => {
  it.each(vectors)('verifies $name as valid=$valid', (v) => {
    const result = verify([parseSecret(v.secret)], { id: v.msgId, timestamp: String(v.timestamp), signature: v.signature, payload: v.payload }, v.timestamp * 1000);
    expect(result.ok).toBe(v.valid);
  });

  it.each(vectors.filter((v) => v.valid && !v.signature.includes(' ')))('signs $name to the expected signature', (v) => {
    expect(sign(parseSecret(v.secret), v.msgId, v.timestamp, v.payload)).toBe(v.signature);
  });
});

describe('verify', () => {
  const key = parseSecret(generateSecret());
  const other = parseSecret(generateSecret());
  const now = 1_764_300_000_000;
  const signedAt = (ts: number) => {
    const headers = signedHeaders(key, 'payload', ts * 1000);
    return { id: headers['webhook-id'], timestamp: headers['webhook-timestamp'], signature: headers['webhook-signature'], payload: 'payload' };
  };

  it('accepts a timestamp 300 seconds old or ahead, and refuses 301', () => {
    expect(verify([key], signedAt(now / 1000 - 300), now).ok).toBe(true);
    expect(verify([key], signedAt(now / 1000 + 300), now).ok).toBe(true);
    expect(verify([key], signedAt(now / 1000 - 301), now)).toEqual({ ok: false, reason: 'stale' });
    expect(verify([key], signedAt(now / 1000 + 301), now)).toEqual({ ok: false, reason: 'stale' });
  });

  it('accepts any matching signature in the list and any configured key (rotation)', () => {
    const input = signedAt(now / 1000);
    const foreign = sign(other, input.id, Number(input.timestamp), 'payload');
    expect(verify([key], { ...input, signature: `${foreign} ${input.signature}` }, now).ok).toBe(true);
    expect(verify([other, key], input, now).ok).toBe(true);
    expect(verify([other], input, now)).toEqual({ ok: false, reason: 'invalid' });
  });

  it('reports missing headers as missing', () => {
    const input = signedAt(now / 1000);
    expect(verify([key], { ...input, id: undefined }, now)).toEqual({ ok: false, reason: 'missing' });
    expect(verify([key], { ...input, signature: undefined }, now)).toEqual({ ok: false, reason: 'missing' });
    expect(verify([key], { ...input, timestamp: undefined }, now)).toEqual({ ok: false, reason: 'missing' });
  });

  it('refuses malformed timestamps, unknown versions, bad base64 and truncated signatures', () => {
    const input = signedAt(now / 1000);
    const b64 = input.signature.slice(3);
    for (const timestamp of ['abc', '-1', '1e9', '', ' 1764300000']) {
      expect(verify([key], { ...input, timestamp }, now).ok).toBe(false);
    }
    for (const signature of [`v2,${b64}`, `v1a,${b64}`, b64, 'v1,!!!!', `v1,${b64.slice(0, 20)}`, 'v1,', ',', 'v1,' + 'A'.repeat(5000)]) {
      expect(verify([key], { ...input, signature }, now)).toEqual({ ok: false, reason: 'invalid' });
    }
  });

  it('covers the payload byte for byte', () => {
    const input = signedAt(now / 1000);
    expect(verify([key], { ...input, payload: 'payload ' }, now).ok).toBe(false);
    expect(verify([key], { ...input, payload: Buffer.from('payload') }, now).ok).toBe(true);
  });
});

describe('parseSecret', () => {
  it('takes whsec_ with 24 to 64 bytes of base64', () => {
    expect(parseSecret(generateSecret(24)).length).toBe(24);
    expect(parseSecret(generateSecret(64)).length).toBe(64);
  });

  it.each([
    ['no prefix', 'MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'],
    ['not base64', 'whsec_not base64!'],
    ['too short', generateSecret(16)],
    ['too long', generateSecret(65)],
    ['empty', 'whsec_'],
  ])('refuses a secret that is %s', (_name, secret) => {
    expect(() => parseSecret(secret)).toThrow(/secret/);
  });
});
