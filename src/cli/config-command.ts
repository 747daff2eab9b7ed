import { loadConfig, type ResolvedConfig } from '../config.js';
import { SETTINGS } from '../config-table.js';
import { ConfigError } from '../errors.js';
import { EXIT_FAILURE, EXIT_OK, formatRows, parseCommonArgs, printFailure, type CliIo } from './cli-support.js';

export const CONFIG_USAGE = `usage: codecheck-db config [--json]
  Resolves the configuration from DATABASE_URL and DB_* exactly as new Database() would, and prints
  it with the password redacted, followed by any warnings. Connects to nothing.
  Exit 0: valid (warnings may be printed); 2: invalid, with every problem listed; or a usage error.
  --json     print { config, warnings } or { error, problems } as JSON.
`;

/** `codecheck-db config`: the resolved configuration, secrets redacted; exit 2 listing every problem. */
export async function runConfig(
  argv: readonly string[],
  io: CliIo,
  env: Record<string, string | undefined> = process.env,
): Promise<number> {
  const args = parseCommonArgs(argv, { hasTimeout: false });
  if (args.isHelp) {
    io.stdout(CONFIG_USAGE);
    return EXIT_OK;
  }
  const isJson = args.isJson;
  let config: ResolvedConfig;
  try {
    config = loadConfig(env);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    printFailure(io, error, isJson);
    return EXIT_FAILURE;
  }
  if (isJson) {
    // The resolved config's toJSON shows the password as <redacted> and leaves certificate contents out.
    const { warnings, ...rest } = JSON.parse(JSON.stringify(config)) as Record<string, unknown>;
    io.stdout(`${JSON.stringify({ config: rest, warnings }, null, 2)}\n`);
    return EXIT_OK;
  }
  io.stdout(formatConfig(config));
  return EXIT_OK;
}

function show(value: unknown): string {
  return value === undefined ? '(not set)' : typeof value === 'string' ? value : JSON.stringify(value);
}

function formatConfig(config: ResolvedConfig): string {
  const ssl = config.ssl;
  const sslValues: Record<string, unknown> = {
    sslMode: ssl.mode,
    sslRootCert: ssl.rootCertPath,
    sslCert: ssl.certPath,
    sslKey: ssl.keyPath,
  };
  const rows = SETTINGS.map((spec): [string, string] => {
    const label = spec.env ? `${spec.option} (${spec.env})` : spec.option;
    if (spec.option === 'password') return [label, config.password === undefined ? '(not set)' : '<redacted>'];
    if (spec.option in sslValues) return [label, show(sslValues[spec.option])];
    if (spec.option === 'replicas')
      return [
        label,
        config.replicas.length === 0
          ? '(none)'
          : config.replicas
              .map((r) => `${r.name} (${r.user}@${r.host}:${r.port}/${r.database}, min ${r.min}, max ${r.max})`)
              .join(', '),
      ];
    return [label, show((config as unknown as Record<string, unknown>)[spec.option])];
  });
  const warnings =
    config.warnings.length === 0 ? 'warnings: none\n' : `warnings:\n${config.warnings.map((w) => `- ${w}\n`).join('')}`;
  return `${formatRows(rows)}${warnings}`;
}
