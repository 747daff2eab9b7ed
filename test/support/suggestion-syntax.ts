import ts from 'typescript';

/**
 * The syntax errors of a migrate-scan suggestion parsed as it would be pasted: its imports at the top
 * of a module, the rest in the body of an async function (suggestions are statements in place of the
 * code they replace).
 */
export function syntaxErrors(after: string): string[] {
  const lines = after.split('\n');
  const imports = lines.filter((line) => /^import /.test(line));
  const body = lines.filter((line) => !/^import /.test(line));
  const source = `${imports.join('\n')}\nexport async function suggestion() {\n${body.join('\n')}\n}\n`;
  const output = ts.transpileModule(source, { fileName: 'suggestion.ts', reportDiagnostics: true });
  return (output.diagnostics ?? []).map((diagnostic) => ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n'));
}
