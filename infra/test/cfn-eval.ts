/**
 * Evaluates the parts of a CloudFormation template that depend on parameters,
 * the way CloudFormation does at deploy time: conditions, `Fn::If`,
 * `Ref` to a parameter and `AWS::NoValue` (which removes the property or list
 * item). Other intrinsics (`Fn::GetAtt`, `Fn::Join` of resource attributes)
 * are left as they are. Enough to test what a parameter switches on and off.
 */

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

const REMOVED = Symbol('AWS::NoValue');

export interface Template {
  Parameters: Record<string, { Default?: string | number; AllowedValues?: string[]; AllowedPattern?: string }>;
  Conditions: Record<string, Json>;
  Resources: Record<string, { Type: string; Condition?: string; Properties?: JsonObject }>;
}

export interface Resolved {
  /** Resources whose Condition holds, with properties evaluated. */
  resources: Record<string, { Type: string; Properties: JsonObject }>;
  conditions: Record<string, boolean>;
}

/**
 * Evaluates `template` for `overrides` on top of the parameters' defaults.
 * `refs` gives values for `Ref` to a resource and `Fn::GetAtt` (keyed
 * `LogicalId.Attribute`), standing in for what exists only after deployment;
 * `Fn::Join` is evaluated once all its parts are strings.
 */
export function resolveTemplate(
  template: Template,
  overrides: Record<string, string | number> = {},
  refs: Record<string, string> = {},
): Resolved {
  const params: Record<string, string | number> = {};
  for (const [name, spec] of Object.entries(template.Parameters)) {
    const value = overrides[name] ?? spec.Default;
    if (value === undefined) throw new Error(`parameter ${name} has no default and no value`);
    if (spec.AllowedValues && !spec.AllowedValues.includes(String(value))) {
      throw new Error(`parameter ${name}: ${String(value)} is not one of ${spec.AllowedValues.join(', ')}`);
    }
    params[name] = value;
  }
  for (const name of Object.keys(overrides)) {
    if (!(name in params)) throw new Error(`unknown parameter ${name}`);
  }

  const conditions: Record<string, boolean> = {};
  const condition = (name: string): boolean => {
    if (!(name in conditions)) {
      const expression = template.Conditions[name];
      if (expression === undefined) throw new Error(`unknown condition ${name}`);
      conditions[name] = truth(expression);
    }
    return conditions[name]!;
  };
  const truth = (expression: Json): boolean => {
    const [fn, args] = single(expression);
    const list = args as Json[];
    switch (fn) {
      case 'Condition':
        return condition(args as string);
      case 'Fn::Equals':
        return JSON.stringify(value(list[0]!)) === JSON.stringify(value(list[1]!));
      case 'Fn::Not':
        return !truth(list[0]!);
      case 'Fn::And':
        return list.every(truth);
      case 'Fn::Or':
        return list.some(truth);
      default:
        throw new Error(`unsupported condition function ${fn}`);
    }
  };
  const value = (node: Json): Json | typeof REMOVED => {
    if (Array.isArray(node)) {
      return node.map(value).filter((item): item is Json => item !== REMOVED);
    }
    if (node === null || typeof node !== 'object') return node;
    const keys = Object.keys(node);
    if (keys.length === 1 && keys[0] === 'Ref') {
      const name = node.Ref as string;
      if (name === 'AWS::NoValue') return REMOVED;
      if (name in params) return params[name]!;
      return refs[name] ?? node;
    }
    if (keys.length === 1 && keys[0] === 'Fn::GetAtt') {
      const [id, attribute] = node['Fn::GetAtt'] as [string, string];
      return refs[`${id}.${attribute}`] ?? node;
    }
    if (keys.length === 1 && keys[0] === 'Fn::Join') {
      const [separator, parts] = node['Fn::Join'] as [string, Json[]];
      const resolved = value(parts) as Json[];
      return resolved.every((part) => typeof part === 'string' || typeof part === 'number')
        ? resolved.join(separator)
        : { 'Fn::Join': [separator, resolved] };
    }
    if (keys.length === 1 && keys[0] === 'Fn::If') {
      const [name, whenTrue, whenFalse] = node['Fn::If'] as [string, Json, Json];
      return value(condition(name) ? whenTrue : whenFalse);
    }
    const out: JsonObject = {};
    for (const [key, child] of Object.entries(node)) {
      const resolved = value(child);
      if (resolved !== REMOVED) out[key] = resolved;
    }
    return out;
  };

  for (const name of Object.keys(template.Conditions)) condition(name);
  const resources: Resolved['resources'] = {};
  for (const [id, resource] of Object.entries(template.Resources)) {
    if (resource.Condition !== undefined && !condition(resource.Condition)) continue;
    resources[id] = { Type: resource.Type, Properties: (value(resource.Properties ?? {}) as JsonObject) ?? {} };
  }
  return { resources, conditions };
}

/** The one resource of `type`; fails if there is none or more than one. */
export function onlyResource(resolved: Resolved, type: string): JsonObject {
  const found = Object.values(resolved.resources).filter((resource) => resource.Type === type);
  if (found.length !== 1) throw new Error(`expected one ${type}, found ${found.length}`);
  return found[0]!.Properties;
}

function single(node: Json): [string, Json] {
  if (node === null || typeof node !== 'object' || Array.isArray(node) || Object.keys(node).length !== 1) {
    throw new Error(`not an intrinsic function: ${JSON.stringify(node)}`);
  }
  const [entry] = Object.entries(node);
  return entry!;
}
