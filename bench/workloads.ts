/**
 * The benchmark's schema, seed data, SQL texts and workloads. Every variant runs the same SQL; only
 * the way it reaches the server differs (bench/variants/).
 */
import pg from 'pg';

/** Rows in `bench_items`; point selects and writes pick ids uniformly from 1..ITEM_COUNT. */
export const ITEM_COUNT = 100_000;
/** Distinct `category` values; each holds ITEM_COUNT / CATEGORY_COUNT rows. */
export const CATEGORY_COUNT = 100;

/** The SQL every variant sends. Parameters are always bound. */
export const SQL = {
  select1: 'SELECT 1',
  point: 'SELECT id, category, name, score, updated_at FROM bench_items WHERE id = $1',
  list: 'SELECT id, name, score FROM bench_items WHERE category = $1 ORDER BY score DESC, id LIMIT 10',
  insertEvent: 'INSERT INTO bench_events (item_id, kind) VALUES ($1, $2)',
  updateItem: 'UPDATE bench_items SET score = score + 1, updated_at = now() WHERE id = $1',
} as const;

/** One operation of each kind; a variant implements them with its own API. */
export interface Operations {
  /** `SELECT 1`. */
  select1(): Promise<unknown>;
  /** Point select by primary key. */
  point(id: number): Promise<unknown>;
  /** Read-only list/filter query (10 rows from one category), read-only by the library's default. */
  list(category: number): Promise<unknown>;
  /** BEGIN; INSERT an event; UPDATE the item; COMMIT. */
  write(id: number): Promise<unknown>;
}

/** Workload names, in table order. */
export const WORKLOADS = ['select1', 'point', 'readonly', 'write', 'mix'] as const;
export type WorkloadName = (typeof WORKLOADS)[number];

export const WORKLOAD_TITLES: Record<WorkloadName, string> = {
  select1: 'SELECT 1',
  point: 'point select by primary key',
  readonly: 'read-only list query (executeQuery default readOnly)',
  write: 'write transaction (BEGIN, INSERT, UPDATE, COMMIT)',
  mix: 'CodeCheck-like mix (70% point, 20% list, 10% write tx)',
};

/** A fast deterministic random source, one per worker (xorshift32). */
export class Random {
  #state: number;
  constructor(seed: number) {
    this.#state = seed >>> 0 || 0x9e3779b9;
  }
  /** Uniform float in [0, 1). */
  next(): number {
    let x = this.#state;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.#state = x >>> 0;
    return this.#state / 4294967296;
  }
  /** Uniform integer in [1, n]. */
  int(n: number): number {
    return 1 + Math.floor(this.next() * n);
  }
}

/** One operation of `workload`, drawn with `random`. */
export function runOperation(ops: Operations, workload: WorkloadName, random: Random): Promise<unknown> {
  switch (workload) {
    case 'select1':
      return ops.select1();
    case 'point':
      return ops.point(random.int(ITEM_COUNT));
    case 'readonly':
      return ops.list(random.int(CATEGORY_COUNT) - 1);
    case 'write':
      return ops.write(random.int(ITEM_COUNT));
    case 'mix': {
      const draw = random.next();
      if (draw < 0.7) return ops.point(random.int(ITEM_COUNT));
      if (draw < 0.9) return ops.list(random.int(CATEGORY_COUNT) - 1);
      return ops.write(random.int(ITEM_COUNT));
    }
  }
}

/** Creates and fills the benchmark tables (idempotent: drops them first). */
export async function seed(url: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query('DROP TABLE IF EXISTS bench_events, bench_items');
    await client.query(`CREATE TABLE bench_items (
      id integer PRIMARY KEY,
      category integer NOT NULL,
      name text NOT NULL,
      score integer NOT NULL,
      updated_at timestamptz NOT NULL DEFAULT now())`);
    await client.query(
      `INSERT INTO bench_items (id, category, name, score)
       SELECT g, g % ${CATEGORY_COUNT}, 'item ' || g, (g * 7919) % 1000 FROM generate_series(1, ${ITEM_COUNT}) AS g`,
    );
    await client.query('CREATE INDEX bench_items_category_score ON bench_items (category, score DESC, id)');
    await client.query(`CREATE TABLE bench_events (
      id bigserial PRIMARY KEY,
      item_id integer NOT NULL,
      kind text NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now())`);
    await client.query('VACUUM ANALYZE bench_items');
  } finally {
    await client.end();
  }
}

/** Empties `bench_events` and vacuums, so every cell starts from the same table sizes. */
export async function resetWrites(url: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query('TRUNCATE bench_events');
    await client.query('VACUUM ANALYZE bench_items');
  } finally {
    await client.end();
  }
}
