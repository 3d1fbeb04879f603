/**
 * A small evaluator for the IAM policy features this stack uses (Action and
 * Resource wildcards; Null, Bool, StringLike and NumericLessThan conditions),
 * following the IAM policy evaluation rules: keys within one operator and
 * operators within one Condition are ANDed, the values of one key are ORed, a
 * condition on a key the request lacks fails (except `Null`). It lets the
 * tests ask "is this request allowed/denied" instead of matching JSON shapes.
 */

export interface Statement {
  Sid?: string;
  Effect: 'Allow' | 'Deny';
  Action: string | string[];
  Resource: string | string[];
  Condition?: Record<string, Record<string, unknown>>;
}

export interface Request {
  action: string;
  /** An object ARN (`arn:aws:s3:::bucket/key`) or the bucket ARN. */
  resource: string;
  /** Condition keys present in the request, as strings (absent keys are omitted). */
  context?: Record<string, string>;
}

/** The statements of `effect` that apply to `request`. */
export function matching(statements: readonly Statement[], effect: Statement['Effect'], request: Request): Statement[] {
  return statements.filter(
    (statement) =>
      statement.Effect === effect &&
      list(statement.Action).some((pattern) => glob(pattern, request.action, true)) &&
      list(statement.Resource).some((pattern) => {
        if (typeof pattern !== 'string') throw new Error(`unresolved resource ${JSON.stringify(pattern)}`);
        return glob(pattern, request.resource, false);
      }) &&
      conditionsHold(statement.Condition ?? {}, request.context ?? {}),
  );
}

/** True when an identity policy allows `request` and no bucket-policy statement denies it. */
export function isAllowed(identity: readonly Statement[], bucket: readonly Statement[], request: Request): boolean {
  return matching(bucket, 'Deny', request).length === 0 && matching(identity, 'Allow', request).length > 0;
}

function conditionsHold(condition: Record<string, Record<string, unknown>>, context: Record<string, string>): boolean {
  return Object.entries(condition).every(([operator, keys]) =>
    Object.entries(keys).every(([key, expected]) => {
      const actual = context[key];
      const values = list(expected).map(String);
      switch (operator) {
        case 'Null':
          return values.some((v) => (v === 'true') === (actual === undefined));
        case 'Bool':
          return actual !== undefined && values.some((v) => v.toLowerCase() === actual.toLowerCase());
        case 'StringLike':
          return actual !== undefined && values.some((v) => glob(v, actual, false));
        case 'NumericLessThan':
          return actual !== undefined && values.some((v) => Number(actual) < Number(v));
        default:
          throw new Error(`condition operator ${operator} is not modelled; extend iam-eval.ts`);
      }
    }),
  );
}

function glob(pattern: string, text: string, ignoreCase: boolean): boolean {
  const source = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${source}$`, ignoreCase ? 'i' : '').test(text);
}

function list<T>(value: T | T[]): T[] {
  return Array.isArray(value) ? value : [value];
}
