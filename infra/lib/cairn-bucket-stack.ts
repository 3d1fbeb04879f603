/**
 * The bucket a Cairn store lives in, and least-privilege access to it.
 *
 * Every choice a user makes at deploy time is a CloudFormation parameter (not
 * CDK context) so the one committed template serves CDK users and plain
 * CloudFormation users alike, and the choice can be changed with a stack
 * update instead of a re-synth.
 *
 * Key layout (owned by the S3 backend): content under `<prefix>objects/...`,
 * refs under `<prefix>refs/<name>`. A ref delete is a tombstone written with a
 * conditional PUT, so writers never need `s3:DeleteObject`.
 *
 * @module
 */
import {
  Aws,
  CfnCondition,
  CfnOutput,
  CfnParameter,
  Fn,
  RemovalPolicy,
  Stack,
  type StackProps,
} from 'aws-cdk-lib/core';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as s3 from 'aws-cdk-lib/aws-s3';
import type { Construct } from 'constructs';

/** The logical IDs of the template's parameters, in the order users see them. */
export const PARAMETERS = {
  bucketName: 'BucketName',
  storePrefix: 'StorePrefix',
  abortIncompleteMultipartUploadDays: 'AbortIncompleteMultipartUploadDays',
  versioning: 'Versioning',
  noncurrentVersionExpirationDays: 'NoncurrentVersionExpirationDays',
  objectLock: 'ObjectLock',
  objectLockMode: 'ObjectLockMode',
  objectLockRetentionDays: 'ObjectLockRetentionDays',
} as const;

/** The logical IDs of the template's outputs (prefixed so none equals a parameter's ID). */
export const OUTPUTS = {
  bucketName: 'CairnBucketName',
  bucketArn: 'CairnBucketArn',
  region: 'CairnRegion',
  storePrefix: 'CairnPrefix',
  writerPolicyArn: 'CairnWriterPolicyArn',
  gcPolicyArn: 'CairnGcPolicyArn',
  readerPolicyArn: 'CairnReaderPolicyArn',
} as const;

/**
 * The CloudFormation stack: one bucket, its bucket policy, and three managed
 * policies (writer, garbage collector, reader) to attach to your own roles.
 *
 * Managed policies rather than roles: who assumes them (an EC2 instance
 * profile, a Lambda, a CI OIDC role, a human SSO role) differs per user, and a
 * role with the wrong trust policy is worse than none.
 *
 * @example
 * ```ts
 * const app = new App();
 * new CairnBucketStack(app, 'CairnBucket');
 * app.synth();
 * ```
 */
export class CairnBucketStack extends Stack {
  /** The bucket. */
  readonly bucket: s3.Bucket;
  /** Get, put and list under the store prefix; no delete. */
  readonly writerPolicy: iam.ManagedPolicy;
  /** The writer's rights plus delete under the store prefix. */
  readonly gcPolicy: iam.ManagedPolicy;
  /** Get and list under the store prefix. */
  readonly readerPolicy: iam.ManagedPolicy;

  constructor(scope: Construct, id: string, props?: StackProps) {
    super(scope, id, props);
    this.templateOptions.description =
      'Cairn content-addressed store: bucket (private, encrypted, TLS-only, conditional writes enforced) and writer/gc/reader policies.';

    const bucketName = new CfnParameter(this, PARAMETERS.bucketName, {
      type: 'String',
      default: '',
      // Bucket naming rules, or empty for a name CloudFormation generates.
      allowedPattern: '^$|^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$',
      description: 'Name of the bucket to create. Leave empty to let CloudFormation generate a unique name.',
    });
    const storePrefix = new CfnParameter(this, PARAMETERS.storePrefix, {
      type: 'String',
      default: 'cairn/',
      // Empty (the store owns the whole bucket) or path segments each ending in "/",
      // so `<prefix>objects/` can never run into a neighbouring prefix's keys.
      allowedPattern: '^([A-Za-z0-9!_.*()-]+/)*$',
      constraintDescription: 'must be empty or end with "/" (for example "cairn/" or "teams/a/")',
      description:
        'Key prefix of the store inside the bucket (the S3 backend\'s `prefix` option). Policies grant access under this prefix only.',
    });
    const abortDays = new CfnParameter(this, PARAMETERS.abortIncompleteMultipartUploadDays, {
      type: 'Number',
      default: 7,
      minValue: 1,
      description:
        'Days after which an unfinished multipart upload (a crashed writer\'s parts) is aborted and its parts deleted.',
    });
    const versioning = new CfnParameter(this, PARAMETERS.versioning, {
      type: 'String',
      default: 'Enabled',
      allowedValues: ['Enabled', 'Disabled'],
      description:
        'Keep previous versions of overwritten or deleted keys, so a wrong ref update or an over-eager GC can be undone. Forced on when Object Lock is on.',
    });
    const noncurrentDays = new CfnParameter(this, PARAMETERS.noncurrentVersionExpirationDays, {
      type: 'Number',
      default: 30,
      minValue: 1,
      description:
        'With versioning: days a previous version is kept before it is deleted for good (this is when GC actually frees space).',
    });
    const objectLock = new CfnParameter(this, PARAMETERS.objectLock, {
      type: 'String',
      default: 'Disabled',
      allowedValues: ['Enabled', 'Disabled'],
      description:
        'Object Lock with a default retention on every new object version, so nothing written can be destroyed before the retention ends. Turns versioning on. Clients must send a checksum (Content-MD5 or x-amz-checksum-*) with every PUT and part.',
    });
    const lockMode = new CfnParameter(this, PARAMETERS.objectLockMode, {
      type: 'String',
      default: 'GOVERNANCE',
      allowedValues: ['GOVERNANCE', 'COMPLIANCE'],
      description:
        'With Object Lock: GOVERNANCE lets principals holding s3:BypassGovernanceRetention remove versions early; COMPLIANCE lets nobody, not even the root user.',
    });
    const lockDays = new CfnParameter(this, PARAMETERS.objectLockRetentionDays, {
      type: 'Number',
      default: 30,
      minValue: 1,
      description: 'With Object Lock: days each object version is retained.',
    });

    this.templateOptions.metadata = {
      'AWS::CloudFormation::Interface': {
        ParameterGroups: [
          { Label: { default: 'Bucket and store' }, Parameters: [PARAMETERS.bucketName, PARAMETERS.storePrefix] },
          {
            Label: { default: 'Protection against deletion' },
            Parameters: [
              PARAMETERS.versioning,
              PARAMETERS.noncurrentVersionExpirationDays,
              PARAMETERS.objectLock,
              PARAMETERS.objectLockMode,
              PARAMETERS.objectLockRetentionDays,
            ],
          },
          { Label: { default: 'Housekeeping' }, Parameters: [PARAMETERS.abortIncompleteMultipartUploadDays] },
        ],
      },
    };

    const hasBucketName = new CfnCondition(this, 'HasBucketName', {
      expression: Fn.conditionNot(Fn.conditionEquals(bucketName.valueAsString, '')),
    });
    const objectLockOn = new CfnCondition(this, 'ObjectLockOn', {
      expression: Fn.conditionEquals(objectLock.valueAsString, 'Enabled'),
    });
    // Object Lock only works on a versioned bucket, so it switches versioning on.
    const versioningOn = new CfnCondition(this, 'VersioningOn', {
      expression: Fn.conditionOr(Fn.conditionEquals(versioning.valueAsString, 'Enabled'), objectLockOn),
    });

    this.bucket = new s3.Bucket(this, 'Bucket', {
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      // ACLs off: access is decided by policies alone, so the policies below are the whole story.
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      encryption: s3.BucketEncryption.S3_MANAGED,
      // Adds a bucket-policy Deny for every request with aws:SecureTransport false.
      enforceSSL: true,
      minimumTLSVersion: 1.2,
      removalPolicy: RemovalPolicy.RETAIN,
    });

    const cfnBucket = this.bucket.node.defaultChild as s3.CfnBucket;
    cfnBucket.bucketName = Fn.conditionIf(hasBucketName.logicalId, bucketName.valueAsString, Aws.NO_VALUE).toString();
    cfnBucket.versioningConfiguration = Fn.conditionIf(
      versioningOn.logicalId,
      { Status: 'Enabled' },
      Aws.NO_VALUE,
    );
    cfnBucket.objectLockEnabled = Fn.conditionIf(objectLockOn.logicalId, true, Aws.NO_VALUE) as unknown as boolean;
    cfnBucket.objectLockConfiguration = Fn.conditionIf(
      objectLockOn.logicalId,
      {
        ObjectLockEnabled: 'Enabled',
        Rule: { DefaultRetention: { Mode: lockMode.valueAsString, Days: lockDays.valueAsNumber } },
      },
      Aws.NO_VALUE,
    );
    const prefix = storePrefix.valueAsString;
    // Written at the L1 level because one rule exists only when versioning is on.
    cfnBucket.lifecycleConfiguration = {
      rules: [
        {
          id: 'abort-incomplete-multipart-uploads',
          status: 'Enabled',
          abortIncompleteMultipartUpload: {
            daysAfterInitiation: abortDays.valueAsNumber,
          },
        },
        // The S3 backend stages a stream of unknown hash under `<prefix>tmp/`, copies it
        // to its object key, then deletes it. The writer may not delete, and a crash can
        // interrupt it, so the staging copy expires here instead (and, on a versioned
        // bucket, its noncurrent version too) rather than waiting for
        // NoncurrentVersionExpirationDays.
        {
          id: 'expire-staging',
          status: 'Enabled',
          prefix: `${prefix}tmp/`,
          expirationInDays: 1,
          noncurrentVersionExpiration: { noncurrentDays: 1 },
        },
        Fn.conditionIf(
          versioningOn.logicalId,
          {
            Id: 'expire-noncurrent-versions',
            Status: 'Enabled',
            NoncurrentVersionExpiration: { NoncurrentDays: noncurrentDays.valueAsNumber },
            // Once a deleted key's old versions have expired, its lone delete marker goes too.
            ExpiredObjectDeleteMarker: true,
          },
          Aws.NO_VALUE,
        ),
      ],
    };

    const underPrefix = (suffix: string): string => `${this.bucket.bucketArn}/${prefix}${suffix}`;

    // Conditional writes enforced for everyone, owner included (Principal "*").
    // AWS's "Enforce conditional writes" guide (S3 User Guide,
    // conditional-writes-enforce) pairs the s3:if-none-match / s3:if-match keys
    // with s3:ObjectCreationOperation: that key is true for PutObject,
    // CopyObject and CompleteMultipartUpload and false for CreateMultipartUpload,
    // UploadPart and UploadPartCopy. Those three are authorized as s3:PutObject
    // too but cannot carry conditional headers, so without the Bool condition
    // every multipart upload would be denied. The completion, which is the step
    // that makes the object visible, still must be conditional.
    // Side effect documented there: CopyObject into these prefixes is refused.
    this.bucket.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'DenyObjectWriteWithoutIfNoneMatch',
        effect: iam.Effect.DENY,
        principals: [new iam.AnyPrincipal()],
        actions: ['s3:PutObject'],
        resources: [underPrefix('objects/*')],
        conditions: {
          Null: { 's3:if-none-match': 'true' },
          Bool: { 's3:ObjectCreationOperation': 'true' },
        },
      }),
    );
    this.bucket.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'DenyUnconditionalRefWrite',
        effect: iam.Effect.DENY,
        principals: [new iam.AnyPrincipal()],
        actions: ['s3:PutObject'],
        resources: [underPrefix('refs/*')],
        // Keys inside one Null block are ANDed: denied only when both headers are absent.
        conditions: {
          Null: { 's3:if-match': 'true', 's3:if-none-match': 'true' },
          Bool: { 's3:ObjectCreationOperation': 'true' },
        },
      }),
    );

    const listUnderPrefix = new iam.PolicyStatement({
      sid: 'ListStorePrefix',
      actions: ['s3:ListBucket'],
      resources: [this.bucket.bucketArn],
      conditions: { StringLike: { 's3:prefix': [`${prefix}*`] } },
    });
    const read = new iam.PolicyStatement({
      sid: 'ReadStore',
      actions: ['s3:GetObject'],
      resources: [underPrefix('*')],
    });
    // AbortMultipartUpload lets a writer clean up its own failed upload; it
    // cannot remove a stored object. ListMultipartUploadParts lets it resume.
    const write = new iam.PolicyStatement({
      sid: 'WriteStore',
      actions: ['s3:PutObject', 's3:AbortMultipartUpload', 's3:ListMultipartUploadParts'],
      resources: [underPrefix('*')],
    });
    // On a versioned bucket this only adds a delete marker: the bytes stay
    // recoverable until NoncurrentVersionExpirationDays. DeleteObjectVersion,
    // which would destroy them at once, is deliberately not granted.
    const remove = new iam.PolicyStatement({
      sid: 'DeleteStore',
      actions: ['s3:DeleteObject'],
      resources: [underPrefix('*')],
    });

    this.readerPolicy = new iam.ManagedPolicy(this, 'ReaderPolicy', {
      description: 'Cairn reader: get and list under the store prefix.',
      statements: [listUnderPrefix, read],
    });
    this.writerPolicy = new iam.ManagedPolicy(this, 'WriterPolicy', {
      description: 'Cairn writer: get, put and list under the store prefix; no delete.',
      statements: [listUnderPrefix, read, write],
    });
    this.gcPolicy = new iam.ManagedPolicy(this, 'GcPolicy', {
      description: 'Cairn garbage collector: the writer\'s rights plus delete under the store prefix.',
      statements: [listUnderPrefix, read, write, remove],
    });

    const output = (id: string, value: string, description: string): void => {
      new CfnOutput(this, id, { value, description });
    };
    output(OUTPUTS.bucketName, this.bucket.bucketName, 'Bucket name: the S3 backend\'s `bucket` option.');
    output(OUTPUTS.bucketArn, this.bucket.bucketArn, 'Bucket ARN.');
    output(OUTPUTS.region, Aws.REGION, 'Region of the bucket: the S3 client\'s `region`.');
    output(OUTPUTS.storePrefix, prefix, 'Key prefix of the store: the S3 backend\'s `prefix` option.');
    output(OUTPUTS.writerPolicyArn, this.writerPolicy.managedPolicyArn, 'Attach to the roles that write (put, sync).');
    output(OUTPUTS.gcPolicyArn, this.gcPolicy.managedPolicyArn, 'Attach to the role that runs garbage collection.');
    output(OUTPUTS.readerPolicyArn, this.readerPolicy.managedPolicyArn, 'Attach to read-only roles.');
  }
}
