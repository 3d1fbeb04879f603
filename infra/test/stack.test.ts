import { Match, Template } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { synth, type Violation } from '../lib/app.js';
import { OUTPUTS, PARAMETERS } from '../lib/cairn-bucket-stack.js';
import { onlyResource, resolveTemplate, type Template as CfnTemplate } from './cfn-eval.js';
import { isAllowed, matching, type Request, type Statement } from './iam-eval.js';

// Synthesizing costs seconds (loading aws-cdk-lib, validation): once per file.
let json: CfnTemplate;
let template: Template;
let violations: Violation[];
beforeAll(() => {
  const result = synth();
  json = result.template as unknown as CfnTemplate;
  violations = result.violations;
  template = Template.fromJSON(json);
});

it('passes the CloudFormation validation the CDK runs at synth (resource schemas, cfn-lint rules) without a finding', () => {
  expect(violations).toEqual([]);
});

const BUCKET = 'cairn-test-bucket';
const BUCKET_ARN = `arn:aws:s3:::${BUCKET}`;

/** The template evaluated for `parameters`, with the bucket's deploy-time attributes filled in. */
function deployed(parameters: Record<string, string | number> = {}) {
  const bucketId = Object.keys(template.findResources('AWS::S3::Bucket'))[0]!;
  const policyIds = Object.keys(template.findResources('AWS::IAM::ManagedPolicy'));
  const refs: Record<string, string> = { [bucketId]: BUCKET, [`${bucketId}.Arn`]: BUCKET_ARN };
  for (const id of policyIds) refs[id] = `arn:aws:iam::123456789012:policy/${id}`;
  const resolved = resolveTemplate(json, parameters, refs);
  const statementsOf = (properties: Record<string, unknown>): Statement[] =>
    (properties.PolicyDocument as { Statement: Statement[] }).Statement;
  const policy = (prefix: string): Statement[] => {
    const [id] = Object.entries(resolved.resources).find(
      ([logicalId, resource]) => resource.Type === 'AWS::IAM::ManagedPolicy' && logicalId.startsWith(prefix),
    )!;
    return statementsOf(resolved.resources[id]!.Properties);
  };
  return {
    resolved,
    bucket: onlyResource(resolved, 'AWS::S3::Bucket'),
    bucketPolicy: statementsOf(onlyResource(resolved, 'AWS::S3::BucketPolicy')),
    writer: policy('WriterPolicy'),
    gc: policy('GcPolicy'),
    reader: policy('ReaderPolicy'),
  };
}

const objectKey = `objects/sha256/ab/${'c'.repeat(62)}`;
const https = { 'aws:SecureTransport': 'true', 's3:TlsVersion': '1.3' };
/** A PutObject-authorized request under `key`: plain PUT, CopyObject and CompleteMultipartUpload create (true), the multipart steps do not. */
const put = (key: string, headers: Record<string, string> = {}, creation = true): Request => ({
  action: 's3:PutObject',
  resource: `${BUCKET_ARN}/${key}`,
  context: { ...https, 's3:ObjectCreationOperation': String(creation), ...headers },
});
const get = (key: string): Request => ({ action: 's3:GetObject', resource: `${BUCKET_ARN}/${key}`, context: https });
const del = (key: string): Request => ({ action: 's3:DeleteObject', resource: `${BUCKET_ARN}/${key}`, context: https });
const list = (prefix: string): Request => ({
  action: 's3:ListBucket',
  resource: BUCKET_ARN,
  context: { ...https, 's3:prefix': prefix },
});

describe('bucket', () => {
  it('blocks every kind of public access and disables ACLs', () => {
    template.hasResourceProperties('AWS::S3::Bucket', {
      PublicAccessBlockConfiguration: {
        BlockPublicAcls: true,
        BlockPublicPolicy: true,
        IgnorePublicAcls: true,
        RestrictPublicBuckets: true,
      },
      OwnershipControls: { Rules: [{ ObjectOwnership: 'BucketOwnerEnforced' }] },
    });
  });

  it('encrypts at rest by default', () => {
    template.hasResourceProperties('AWS::S3::Bucket', {
      BucketEncryption: {
        ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }],
      },
    });
  });

  it('is retained when the stack is deleted or the bucket replaced', () => {
    template.hasResource('AWS::S3::Bucket', { DeletionPolicy: 'Retain', UpdateReplacePolicy: 'Retain' });
  });

  it('aborts incomplete multipart uploads after AbortIncompleteMultipartUploadDays (default 7)', () => {
    const rules = (bucket: Record<string, unknown>) =>
      (bucket.LifecycleConfiguration as { Rules: Record<string, unknown>[] }).Rules;
    expect(rules(deployed().bucket)).toContainEqual({
      Id: 'abort-incomplete-multipart-uploads',
      Status: 'Enabled',
      AbortIncompleteMultipartUpload: { DaysAfterInitiation: 7 },
    });
    const abort = rules(deployed({ [PARAMETERS.abortIncompleteMultipartUploadDays]: 2 }).bucket).find(
      (rule) => rule.Id === 'abort-incomplete-multipart-uploads',
    );
    expect(abort?.AbortIncompleteMultipartUpload).toEqual({ DaysAfterInitiation: 2 });
    // The rule has no filter: it covers every key, including a store's parts.
    expect(abort).not.toHaveProperty('Filter');
    expect(abort).not.toHaveProperty('Prefix');
  });

  it('expires the S3 backend\'s staging keys (<prefix>tmp/) after a day, and only those', () => {
    const staging = (prefix?: string) =>
      (
        deployed(prefix === undefined ? {} : { [PARAMETERS.storePrefix]: prefix }).bucket.LifecycleConfiguration as {
          Rules: Record<string, unknown>[];
        }
      ).Rules.find((rule) => rule.Id === 'expire-staging');
    expect(staging()).toEqual({
      Id: 'expire-staging',
      Status: 'Enabled',
      Prefix: 'cairn/tmp/',
      ExpirationInDays: 1,
      NoncurrentVersionExpiration: { NoncurrentDays: 1 },
    });
    expect(staging('teams/a/')?.Prefix).toBe('teams/a/tmp/');
    expect(staging('')?.Prefix).toBe('tmp/');
  });

  it('takes the bucket name from BucketName, or lets CloudFormation generate one', () => {
    expect(deployed().bucket).not.toHaveProperty('BucketName');
    expect(deployed({ [PARAMETERS.bucketName]: 'my-cairn' }).bucket.BucketName).toBe('my-cairn');
  });
});

describe('optional protection against deletion', () => {
  const lifecycleIds = (bucket: Record<string, unknown>) =>
    (bucket.LifecycleConfiguration as { Rules: { Id: string }[] }).Rules.map((rule) => rule.Id);

  it('defaults: versioning on with noncurrent versions expiring after 30 days, Object Lock off', () => {
    const { bucket, resolved } = deployed();
    expect(bucket.VersioningConfiguration).toEqual({ Status: 'Enabled' });
    expect(bucket).not.toHaveProperty('ObjectLockEnabled');
    expect(bucket).not.toHaveProperty('ObjectLockConfiguration');
    expect((bucket.LifecycleConfiguration as { Rules: unknown[] }).Rules).toContainEqual({
      Id: 'expire-noncurrent-versions',
      Status: 'Enabled',
      NoncurrentVersionExpiration: { NoncurrentDays: 30 },
      ExpiredObjectDeleteMarker: true,
    });
    expect(resolved.conditions).toEqual({ HasBucketName: false, ObjectLockOn: false, VersioningOn: true });
  });

  it('Versioning=Disabled: no versioning and no noncurrent-version rule', () => {
    const { bucket } = deployed({ [PARAMETERS.versioning]: 'Disabled' });
    expect(bucket).not.toHaveProperty('VersioningConfiguration');
    expect(lifecycleIds(bucket)).toEqual(['abort-incomplete-multipart-uploads', 'expire-staging']);
  });

  it('ObjectLock=Enabled: default retention with the chosen mode and days, and versioning forced on', () => {
    const { bucket } = deployed({
      [PARAMETERS.versioning]: 'Disabled',
      [PARAMETERS.objectLock]: 'Enabled',
      [PARAMETERS.objectLockMode]: 'COMPLIANCE',
      [PARAMETERS.objectLockRetentionDays]: 365,
    });
    expect(bucket.ObjectLockEnabled).toBe(true);
    expect(bucket.ObjectLockConfiguration).toEqual({
      ObjectLockEnabled: 'Enabled',
      Rule: { DefaultRetention: { Mode: 'COMPLIANCE', Days: 365 } },
    });
    expect(bucket.VersioningConfiguration).toEqual({ Status: 'Enabled' });
    expect(lifecycleIds(bucket)).toContain('expire-noncurrent-versions');
  });

  it('Object Lock defaults to GOVERNANCE for 30 days when enabled', () => {
    const { bucket } = deployed({ [PARAMETERS.objectLock]: 'Enabled' });
    expect(bucket.ObjectLockConfiguration).toEqual({
      ObjectLockEnabled: 'Enabled',
      Rule: { DefaultRetention: { Mode: 'GOVERNANCE', Days: 30 } },
    });
  });

  it('offers only valid choices', () => {
    expect(json.Parameters[PARAMETERS.objectLockMode]!.AllowedValues).toEqual(['GOVERNANCE', 'COMPLIANCE']);
    expect(() => deployed({ [PARAMETERS.versioning]: 'Suspended' })).toThrow(/not one of/);
    template.hasParameter(PARAMETERS.abortIncompleteMultipartUploadDays, { Type: 'Number', MinValue: 1 });
    template.hasParameter(PARAMETERS.noncurrentVersionExpirationDays, { Type: 'Number', MinValue: 1 });
    template.hasParameter(PARAMETERS.objectLockRetentionDays, { Type: 'Number', MinValue: 1 });
  });

  it('documents every parameter', () => {
    for (const name of Object.values(PARAMETERS)) {
      template.hasParameter(name, { Description: Match.stringLikeRegexp('.{20,}') });
    }
  });
});

describe('bucket policy', () => {
  it('denies any request without TLS, and TLS older than 1.2, on the bucket and every key', () => {
    const { bucketPolicy } = deployed();
    const plain = { 'aws:SecureTransport': 'false', 's3:ObjectCreationOperation': 'true', 's3:if-none-match': '*' };
    for (const request of [
      { action: 's3:GetObject', resource: `${BUCKET_ARN}/cairn/${objectKey}`, context: plain },
      { action: 's3:PutObject', resource: `${BUCKET_ARN}/anything`, context: plain },
      { action: 's3:ListBucket', resource: BUCKET_ARN, context: plain },
    ]) {
      expect(matching(bucketPolicy, 'Deny', request).length).toBeGreaterThan(0);
    }
    expect(matching(bucketPolicy, 'Deny', get(`cairn/${objectKey}`))).toEqual([]);
    const oldTls = { ...get(`cairn/${objectKey}`), context: { ...https, 's3:TlsVersion': '1.1' } };
    expect(matching(bucketPolicy, 'Deny', oldTls).length).toBeGreaterThan(0);
    template.hasResourceProperties('AWS::S3::BucketPolicy', {
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Effect: 'Deny',
            Principal: { AWS: '*' },
            Action: 's3:*',
            Condition: { Bool: { 'aws:SecureTransport': 'false' } },
          }),
        ]),
      },
    });
  });

  it('names the conditional-write condition keys, for everyone', () => {
    template.hasResourceProperties('AWS::S3::BucketPolicy', {
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Sid: 'DenyObjectWriteWithoutIfNoneMatch',
            Effect: 'Deny',
            Principal: { AWS: '*' },
            Action: 's3:PutObject',
            Condition: { Null: { 's3:if-none-match': 'true' }, Bool: { 's3:ObjectCreationOperation': 'true' } },
          }),
          Match.objectLike({
            Sid: 'DenyUnconditionalRefWrite',
            Effect: 'Deny',
            Principal: { AWS: '*' },
            Action: 's3:PutObject',
            Condition: {
              Null: { 's3:if-match': 'true', 's3:if-none-match': 'true' },
              Bool: { 's3:ObjectCreationOperation': 'true' },
            },
          }),
        ]),
      },
    });
  });

  it('refuses a PUT or multipart completion under objects/ without If-None-Match', () => {
    const { bucketPolicy, writer } = deployed();
    const key = `cairn/${objectKey}`;
    expect(isAllowed(writer, bucketPolicy, put(key))).toBe(false);
    expect(isAllowed(writer, bucketPolicy, put(key, { 's3:if-match': '"etag"' }))).toBe(false);
    expect(isAllowed(writer, bucketPolicy, put(key, { 's3:if-none-match': '*' }))).toBe(true);
  });

  it('exempts CreateMultipartUpload, UploadPart and UploadPartCopy, which cannot carry the headers', () => {
    const { bucketPolicy, writer } = deployed();
    for (const key of [`cairn/${objectKey}`, 'cairn/refs/main']) {
      expect(isAllowed(writer, bucketPolicy, put(key, {}, false))).toBe(true);
    }
  });

  it('refuses an unconditional ref write, allows If-Match (update) and If-None-Match (create)', () => {
    const { bucketPolicy, writer } = deployed();
    expect(isAllowed(writer, bucketPolicy, put('cairn/refs/main'))).toBe(false);
    expect(isAllowed(writer, bucketPolicy, put('cairn/refs/team/main'))).toBe(false);
    expect(isAllowed(writer, bucketPolicy, put('cairn/refs/main', { 's3:if-match': '"abc"' }))).toBe(true);
    expect(isAllowed(writer, bucketPolicy, put('cairn/refs/main', { 's3:if-none-match': '*' }))).toBe(true);
  });

  it('follows StorePrefix, including an empty prefix', () => {
    for (const prefix of ['', 'teams/a/']) {
      const { bucketPolicy, writer } = deployed({ [PARAMETERS.storePrefix]: prefix });
      expect(isAllowed(writer, bucketPolicy, put(`${prefix}${objectKey}`))).toBe(false);
      expect(isAllowed(writer, bucketPolicy, put(`${prefix}refs/main`))).toBe(false);
      expect(isAllowed(writer, bucketPolicy, put(`${prefix}${objectKey}`, { 's3:if-none-match': '*' }))).toBe(true);
    }
    // Another store's keys in the same bucket are not this store's: no deny, and no grant.
    const { bucketPolicy, writer } = deployed({ [PARAMETERS.storePrefix]: 'teams/a/' });
    expect(matching(bucketPolicy, 'Deny', put(`teams/b/${objectKey}`))).toEqual([]);
    expect(isAllowed(writer, bucketPolicy, put(`teams/b/${objectKey}`, { 's3:if-none-match': '*' }))).toBe(false);
  });

  it('accepts only prefixes that end in "/" (or none)', () => {
    const pattern = new RegExp(json.Parameters[PARAMETERS.storePrefix]!.AllowedPattern!);
    for (const good of ['', 'cairn/', 'teams/a/', 'x.y_z-1/']) expect(pattern.test(good)).toBe(true);
    for (const bad of ['cairn', '/cairn/', 'a//', 'a/b', 'sp ace/']) expect(pattern.test(bad)).toBe(false);
  });
});

describe('managed policies', () => {
  const actions = (statements: Statement[]): string[] =>
    statements.flatMap((statement) => (Array.isArray(statement.Action) ? statement.Action : [statement.Action]));

  it('writer: get, put and list under the prefix; no delete of any kind', () => {
    const { writer, bucketPolicy } = deployed();
    expect(actions(writer).filter((action) => /delete|\*/i.test(action))).toEqual([]);
    expect(new Set(actions(writer))).toEqual(
      new Set(['s3:ListBucket', 's3:GetObject', 's3:PutObject', 's3:AbortMultipartUpload', 's3:ListMultipartUploadParts']),
    );
    expect(isAllowed(writer, bucketPolicy, get(`cairn/${objectKey}`))).toBe(true);
    expect(isAllowed(writer, bucketPolicy, list('cairn/refs/'))).toBe(true);
    expect(isAllowed(writer, bucketPolicy, del(`cairn/${objectKey}`))).toBe(false);
    expect(isAllowed(writer, bucketPolicy, del('cairn/refs/main'))).toBe(false);
    // Nothing outside the prefix.
    expect(isAllowed(writer, bucketPolicy, get('other/x'))).toBe(false);
    expect(isAllowed(writer, bucketPolicy, list('other/'))).toBe(false);
    expect(isAllowed(writer, bucketPolicy, put('other/x', { 's3:if-none-match': '*' }))).toBe(false);
  });

  it('gc: the writer plus DeleteObject under the prefix, never DeleteObjectVersion', () => {
    const { gc, writer, bucketPolicy } = deployed();
    expect(new Set(actions(gc))).toEqual(new Set([...actions(writer), 's3:DeleteObject']));
    expect(isAllowed(gc, bucketPolicy, del(`cairn/${objectKey}`))).toBe(true);
    expect(isAllowed(gc, bucketPolicy, del('other/x'))).toBe(false);
    expect(isAllowed(gc, bucketPolicy, { ...del(`cairn/${objectKey}`), action: 's3:DeleteObjectVersion' })).toBe(false);
  });

  it('reader: get and list under the prefix only', () => {
    const { reader, bucketPolicy } = deployed();
    expect(new Set(actions(reader))).toEqual(new Set(['s3:ListBucket', 's3:GetObject']));
    expect(isAllowed(reader, bucketPolicy, get('cairn/refs/main'))).toBe(true);
    expect(isAllowed(reader, bucketPolicy, list('cairn/objects/'))).toBe(true);
    expect(isAllowed(reader, bucketPolicy, put('cairn/refs/main', { 's3:if-match': '"e"' }))).toBe(false);
    expect(isAllowed(reader, bucketPolicy, del('cairn/refs/main'))).toBe(false);
  });

  it('grants nothing on a wildcard resource', () => {
    for (const policy of Object.values(template.findResources('AWS::IAM::ManagedPolicy'))) {
      const statements = (policy.Properties.PolicyDocument as { Statement: { Resource: unknown }[] }).Statement;
      for (const statement of statements) expect(JSON.stringify(statement.Resource)).not.toBe('"*"');
    }
  });
});

describe('outputs', () => {
  it('gives the bucket name, ARN, region, prefix and the three policy ARNs', () => {
    const bucketId = Object.keys(template.findResources('AWS::S3::Bucket'))[0]!;
    template.hasOutput(OUTPUTS.bucketName, { Value: { Ref: bucketId } });
    template.hasOutput(OUTPUTS.bucketArn, { Value: { 'Fn::GetAtt': [bucketId, 'Arn'] } });
    template.hasOutput(OUTPUTS.region, { Value: { Ref: 'AWS::Region' } });
    template.hasOutput(OUTPUTS.storePrefix, { Value: { Ref: PARAMETERS.storePrefix } });
    for (const [output, policy] of [
      [OUTPUTS.writerPolicyArn, 'WriterPolicy'],
      [OUTPUTS.gcPolicyArn, 'GcPolicy'],
      [OUTPUTS.readerPolicyArn, 'ReaderPolicy'],
    ] as const) {
      template.hasOutput(output, { Value: { Ref: Match.stringLikeRegexp(`^${policy}`) } });
    }
  });

  it('has no output or parameter that needs the CDK (bootstrap version, assets)', () => {
    expect(Object.keys(json.Parameters)).toEqual(Object.values(PARAMETERS));
    expect(JSON.stringify(json)).not.toMatch(/BootstrapVersion|AssetParameters|CDKMetadata|aws:cdk:path/);
  });
});
