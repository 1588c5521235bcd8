/**
 * Generates operator/src/api/gitmirror.gen.ts from crds/gitmirror.yaml, so the CRD stays the one
 * source of the GitMirror API. `operator/test/crd.test.ts` fails when the committed file differs
 * from what this renders; run `npx node operator/scripts/generate-crd-types.ts` after editing the CRD.
 *
 * A field with a schema `default` is rendered as required: the API server applies defaults on
 * every write and read, so the operator never sees it missing.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';

export interface SchemaNode {
  type?: string;
  description?: string;
  properties?: Record<string, SchemaNode>;
  required?: string[];
  items?: SchemaNode;
  enum?: unknown[];
  default?: unknown;
  [key: string]: unknown;
}

export const CRD_PATH = fileURLToPath(new URL('../../crds/gitmirror.yaml', import.meta.url));
export const TYPES_PATH = fileURLToPath(new URL('../src/api/gitmirror.gen.ts', import.meta.url));

/** The served version's openAPIV3Schema of a parsed CRD document. */
export function crdSchema(crd: unknown): SchemaNode {
  const versions = (crd as { spec: { versions: { schema: { openAPIV3Schema: SchemaNode } }[] } }).spec
    .versions;
  const schema = versions[0]?.schema.openAPIV3Schema;
  if (!schema) throw new Error('CRD has no version with an openAPIV3Schema');
  return schema;
}

function comment(description: string | undefined, indent: string): string {
  if (!description) return '';
  const words = description.trim().split(/\s+/);
  const lines: string[] = [];
  let line = '';
  for (const word of words) {
    if (line && indent.length + 4 + line.length + word.length > 100) {
      lines.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  lines.push(line);
  if (lines.length === 1) return `${indent}/** ${lines[0]} */\n`;
  return `${indent}/**\n${lines.map((l) => `${indent} * ${l}`).join('\n')}\n${indent} */\n`;
}

function renderType(node: SchemaNode, indent: string): string {
  if (node.enum) return node.enum.map((v) => `'${String(v)}'`).join(' | ');
  switch (node.type) {
    case 'string':
      return 'string';
    case 'integer':
    case 'number':
      return 'number';
    case 'boolean':
      return 'boolean';
    case 'array':
      return `Array<${renderType(node.items ?? {}, indent)}>`;
    case 'object':
      return node.properties
        ? `{\n${renderMembers(node, `${indent}  `)}${indent}}`
        : 'Record<string, unknown>';
    default:
      throw new Error(`schema node without a supported type: ${JSON.stringify(node).slice(0, 120)}`);
  }
}

function renderMembers(node: SchemaNode, indent: string): string {
  const required = new Set(node.required ?? []);
  let out = '';
  for (const [name, child] of Object.entries(node.properties ?? {})) {
    const optional = required.has(name) || child.default !== undefined ? '' : '?';
    out += comment(child.description, indent);
    out += `${indent}${name}${optional}: ${renderType(child, indent)};\n`;
  }
  return out;
}

export function renderCrdTypes(crdText: string): string {
  const root = crdSchema(parse(crdText));
  const spec = root.properties?.spec;
  const status = root.properties?.status;
  if (!spec || !status) throw new Error('CRD schema lacks spec or status');
  return [
    '// Generated from crds/gitmirror.yaml by operator/scripts/generate-crd-types.ts: do not edit.',
    '// Fields with a schema default are required here because the API server always fills them.',
    '',
    `export interface GitMirrorSpec {\n${renderMembers(spec, '  ')}}`,
    '',
    `export interface GitMirrorStatus {\n${renderMembers(status, '  ')}}`,
    '',
  ].join('\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  writeFileSync(TYPES_PATH, renderCrdTypes(readFileSync(CRD_PATH, 'utf8')));
  console.log(`wrote ${TYPES_PATH}`);
}
