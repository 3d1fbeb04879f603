/**
 * The direct path's lean SigV4 signer against `@smithy/signature-v4` (what
 * the SDK signs with): the same request signed by both at the same instant
 * must carry the same Authorization header, for every shape the store sends
 * (plain and sub-resource requests, conditional headers, session tokens,
 * keys needing encoding, day changes).
 */
import { SignatureV4 } from '@smithy/signature-v4';
import { describe, expect, it } from 'vitest';
import { NodeSha256 } from '../../src/backends/s3/direct.js';
import { canonicalQuery, EMPTY_SHA256, encodeRfc3986, SigV4Signer, UNSIGNED_PAYLOAD } from '../../src/backends/s3/sigv4.js';

interface Case {
  method: string;
  path: string;
  query?: Record<string, string>;
  headers: Record<string, string>;
  payload: string;
  sessionToken?: string;
}

const credentials = { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY' };

async function smithy(c: Case, now: Date, region = 'eu-west-1'): Promise<string> {
  const signer = new SignatureV4({
    credentials: { ...credentials, ...(c.sessionToken === undefined ? {} : { sessionToken: c.sessionToken }) },
    region,
    service: 's3',
    sha256: NodeSha256,
    uriEscapePath: false,
    applyChecksum: true,
  });
  const signed = await signer.sign(
    {
      method: c.method,
      protocol: 'https:',
      hostname: c.headers.host!,
      path: c.path,
      query: c.query ?? {},
      headers: { ...c.headers, 'x-amz-content-sha256': c.payload },
    },
    { signingDate: now },
  );
  return signed.headers.authorization!;
}

function lean(c: Case, now: Date, signer = new SigV4Signer('eu-west-1')): string[] {
  const headers = Object.entries(c.headers).flat();
  signer.sign(c.method, c.path, canonicalQuery(c.query), headers, c.payload, { ...credentials, sessionToken: c.sessionToken }, now.getTime());
  return headers;
}

function header(headers: string[], name: string): string | undefined {
  for (let i = 0; i < headers.length; i += 2) if (headers[i] === name) return headers[i + 1];
  return undefined;
}

const host = 'bucket.s3.eu-west-1.amazonaws.com';
const cases: Record<string, Case> = {
  'a conditional PUT with a known payload hash': {
    method: 'PUT',
    path: '/objects/sha256/ab/cdef',
    headers: { host, 'if-none-match': '*', 'content-length': '4096' },
    payload: 'a'.repeat(64),
  },
  'a GET with no body': { method: 'GET', path: '/refs/heads/main', headers: { host }, payload: EMPTY_SHA256 },
  'a multipart create (?uploads)': { method: 'POST', path: '/tmp/x', query: { uploads: '' }, headers: { host }, payload: EMPTY_SHA256 },
  'an upload part with an upload id needing encoding': {
    method: 'PUT',
    path: '/tmp/x',
    query: { uploadId: 'a+b/c=d~e f', partNumber: '12' },
    headers: { host, 'content-length': '8388608' },
    payload: UNSIGNED_PAYLOAD,
  },
  'a part copy with its source header': {
    method: 'PUT',
    path: '/objects/sha256/00/11',
    query: { partNumber: '1', uploadId: 'id' },
    headers: { host, 'x-amz-copy-source': '/bucket/tmp/x', 'x-amz-copy-source-range': 'bytes=0-99' },
    payload: EMPTY_SHA256,
  },
  'a key with characters that need encoding, and a session token': {
    method: 'GET',
    path: `/${encodeRfc3986("a b!'()*")}/${encodeRfc3986('é')}`,
    headers: { host, range: 'bytes=0-9' },
    payload: EMPTY_SHA256,
    sessionToken: 'token/with+chars==',
  },
};

describe('SigV4Signer', () => {
  for (const [name, c] of Object.entries(cases)) {
    it(`signs ${name} exactly as @smithy/signature-v4`, async () => {
      const now = new Date('2026-12-02T19:45:07.123Z');
      const headers = lean(c, now);
      expect(header(headers, 'authorization')).toBe(await smithy(c, now));
      expect(header(headers, 'x-amz-date')).toBe('20261202T194507Z');
      expect(header(headers, 'x-amz-security-token')).toBe(c.sessionToken);
    });
  }

  it('derives the signing key again when the day or the secret changes', async () => {
    const signer = new SigV4Signer('eu-west-1');
    const c = cases['a GET with no body']!;
    for (const when of ['2026-12-02T23:59:59.900Z', '2026-12-03T00:00:00.100Z', '2026-12-03T00:00:01.000Z']) {
      const now = new Date(when);
      expect(header(lean(c, now, signer), 'authorization')).toBe(await smithy(c, now));
    }
    const other = { ...credentials, secretAccessKey: 'another-secret' };
    const headers = Object.entries(c.headers).flat();
    const now = new Date('2026-12-03T00:00:01.000Z');
    signer.sign(c.method, c.path, '', headers, c.payload, other, now.getTime());
    expect(header(headers, 'authorization')).not.toBe(header(lean(c, now, signer), 'authorization'));
  });

  it('writes canonical query strings with sorted, encoded keys and values', () => {
    expect(canonicalQuery(undefined)).toBe('');
    expect(canonicalQuery({ uploads: '' })).toBe('uploads=');
    expect(canonicalQuery({ uploadId: 'a b+c', partNumber: '3' })).toBe('partNumber=3&uploadId=a%20b%2Bc');
  });
});
