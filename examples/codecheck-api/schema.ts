/**
 * The example's schema and seed data, created on start when the tables are missing. One transaction
 * under an advisory lock: two instances starting together cannot both create it, and a failure
 * leaves nothing behind.
 */
import type { Database } from './codecheck-db.js';

export const JURISDICTION_TYPES = ['city', 'county', 'state'] as const;
export type JurisdictionType = (typeof JURISDICTION_TYPES)[number];

const TABLES = ['jurisdictions', 'building_codes', 'jurisdiction_codes'] as const;

const CREATE_SQL = `
CREATE TABLE jurisdictions (
  id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name text NOT NULL CONSTRAINT jurisdictions_name_key UNIQUE
    CONSTRAINT jurisdictions_name_check CHECK (btrim(name) <> '' AND length(name) <= 200),
  type text NOT NULL CONSTRAINT jurisdictions_type_check CHECK (type IN ('city', 'county', 'state')),
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE building_codes (
  id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  code text NOT NULL CONSTRAINT building_codes_code_key UNIQUE,
  title text NOT NULL,
  year integer NOT NULL CONSTRAINT building_codes_year_check CHECK (year BETWEEN 1900 AND 2100)
);
CREATE TABLE jurisdiction_codes (
  jurisdiction_id integer NOT NULL REFERENCES jurisdictions (id) ON DELETE CASCADE,
  code_id integer NOT NULL REFERENCES building_codes (id),
  adopted_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (jurisdiction_id, code_id)
);
CREATE INDEX jurisdiction_codes_code_id_idx ON jurisdiction_codes (code_id);
`;

const SEED_SQL = `
INSERT INTO building_codes (code, title, year) VALUES
  ('IBC-2021', 'International Building Code', 2021),
  ('IRC-2021', 'International Residential Code', 2021),
  ('IFC-2021', 'International Fire Code', 2021),
  ('IECC-2021', 'International Energy Conservation Code', 2021),
  ('IPC-2021', 'International Plumbing Code', 2021),
  ('IBC-2018', 'International Building Code', 2018),
  ('NEC-2023', 'National Electrical Code (NFPA 70)', 2023),
  ('CBC-2022', 'California Building Code (Title 24, Part 2)', 2022);
INSERT INTO jurisdictions (name, type) VALUES
  ('California', 'state'),
  ('Texas', 'state'),
  ('Los Angeles County', 'county'),
  ('Travis County', 'county'),
  ('San Diego', 'city'),
  ('Austin', 'city'),
  ('Seattle', 'city');
INSERT INTO jurisdiction_codes (jurisdiction_id, code_id)
SELECT j.id, c.id FROM (VALUES
  ('California', 'CBC-2022'), ('California', 'NEC-2023'),
  ('Texas', 'IBC-2021'), ('Texas', 'NEC-2023'),
  ('Los Angeles County', 'CBC-2022'),
  ('Travis County', 'IBC-2018'), ('Travis County', 'IFC-2021'),
  ('San Diego', 'CBC-2022'), ('San Diego', 'IFC-2021'),
  ('Austin', 'IBC-2021'), ('Austin', 'IRC-2021'), ('Austin', 'IECC-2021'),
  ('Seattle', 'IBC-2018'), ('Seattle', 'IPC-2021')
) AS adopted (jurisdiction, code)
JOIN jurisdictions j ON j.name = adopted.jurisdiction
JOIN building_codes c ON c.code = adopted.code;
`;

/**
 * Creates and seeds the schema when its tables are missing; does nothing when they exist.
 * @returns true when it created the schema.
 * @throws {Error} when only some of the tables exist (a half-made schema is not ours to repair).
 * @throws {DbError} from the database (the transaction is rolled back).
 */
export async function migrate(db: Database): Promise<boolean> {
  return db.withDb(false, async (client) => {
    await client.query("SELECT pg_advisory_xact_lock(hashtext('codecheck-api schema'))");
    const { rows } = await client.query<{ name: string; exists: boolean }>(
      'SELECT name, to_regclass(name) IS NOT NULL AS exists FROM unnest($1::text[]) AS name',
      [TABLES],
    );
    const present = rows.filter((row) => row.exists).map((row) => row.name);
    if (present.length === TABLES.length) return false;
    if (present.length > 0)
      throw new Error(`Only some of the example's tables exist (${present.join(', ')}); drop them or create the rest by hand`);
    // Constant text without parameters: sent as one simple-protocol message.
    await client.query(CREATE_SQL);
    await client.query(SEED_SQL);
    return true;
  });
}
