/**
 * Runs a TypeScript example from the docs as written: its imports dropped (their names come from
 * `scope`), the rest transpiled and run as the body of an async function. Returns what it printed with
 * console.log, one array of arguments per call.
 */
import ts from 'typescript';

export async function runExample(source: string, scope: Record<string, unknown>): Promise<unknown[][]> {
  const body = source
    .split('\n')
    .filter((line) => !line.startsWith('import '))
    .join('\n');
  const js = ts.transpileModule(body, {
    compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext },
  }).outputText;
  const printed: unknown[][] = [];
  const console = { log: (...args: unknown[]) => printed.push(args) };
  const AsyncFunction = Object.getPrototypeOf(async () => undefined).constructor as new (
    ...args: string[]
  ) => (...values: unknown[]) => Promise<void>;
  await new AsyncFunction(...Object.keys(scope), 'console', js)(...Object.values(scope), console);
  return printed;
}
