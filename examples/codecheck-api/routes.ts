/**
 * The CodeCheck API routes: jurisdictions and the building codes they adopt. Reads use
 * `executeQuery` (read-only, enforced by the server); the adoption of several codes is one
 * `withDb(false, ...)` transaction, all or nothing.
 */
import type { FastifyInstance } from 'fastify';
import { HttpError, ID_MESSAGE, ID_PATTERN, TEXT_PATTERN } from './errors.js';
import { JURISDICTION_TYPES, type JurisdictionType } from './schema.js';

interface Jurisdiction {
  id: number;
  name: string;
  type: JurisdictionType;
  createdAt: string;
}

/**
 * Path parameters are text and are not coerced: an id is decimal digits without a sign, leading zero,
 * exponent or hex prefix (`+1`, `0x10` and `1e3` are 400s), at most 10 digits; {@link idOf} checks the
 * integer range.
 */
const ID_PARAMS = {
  type: 'object',
  required: ['id'],
  properties: { id: { type: 'string', pattern: ID_PATTERN } },
  additionalProperties: false,
} as const;

/** A string of the API: any characters but control characters (NUL would be a 22021 from the server). */
const text = (maxLength: number) => ({ type: 'string', minLength: 1, maxLength, pattern: TEXT_PATTERN }) as const;

const MAX_ID = 2_147_483_647;

/** The id of a path that passed {@link ID_PARAMS}; above the integer range it is a 400 naming the field. */
function idOf(params: { id: string }): number {
  const id = Number(params.id);
  if (id > MAX_ID) throw new HttpError(400, ID_MESSAGE);
  return id;
}

/** `q`'s LIKE wildcards are matched literally. */
function likePattern(text: string): string {
  return `%${text.replace(/[\\%_]/g, '\\$&')}%`;
}

/** Registers the routes on `app` (which has `app.db` from the plugin). */
export async function jurisdictionRoutes(app: FastifyInstance): Promise<void> {
  app.get<{ Querystring: { type?: JurisdictionType; q?: string } }>(
    '/jurisdictions',
    {
      schema: {
        querystring: {
          type: 'object',
          properties: { type: { type: 'string', enum: JURISDICTION_TYPES }, q: text(100) },
          additionalProperties: false,
        },
      },
    },
    async (request) => {
      const { type, q } = request.query;
      const rows = await app.db.executeQuery(
        `SELECT j.id, j.name, j.type, count(jc.code_id)::int AS "codeCount"
         FROM jurisdictions j LEFT JOIN jurisdiction_codes jc ON jc.jurisdiction_id = j.id
        WHERE ($1::text IS NULL OR j.type = $1) AND ($2::text IS NULL OR j.name ILIKE $2)
        GROUP BY j.id ORDER BY j.name LIMIT 100`,
        [type ?? null, q === undefined ? null : likePattern(q)],
      );
      return { jurisdictions: rows };
    },
  );

  app.get<{ Params: { id: string } }>('/jurisdictions/:id', { schema: { params: ID_PARAMS } }, async (request) => {
    const id = idOf(request.params);
    const rows = await app.db.executeQuery(
      `SELECT j.id, j.name, j.type, j.created_at AS "createdAt",
              coalesce(json_agg(json_build_object('code', c.code, 'title', c.title, 'year', c.year, 'adoptedAt', jc.adopted_at)
                       ORDER BY c.code) FILTER (WHERE c.id IS NOT NULL), '[]') AS codes
         FROM jurisdictions j
         LEFT JOIN jurisdiction_codes jc ON jc.jurisdiction_id = j.id
         LEFT JOIN building_codes c ON c.id = jc.code_id
        WHERE j.id = $1
        GROUP BY j.id`,
      [id],
    );
    if (rows.length === 0) throw new HttpError(404, `Jurisdiction ${id} does not exist.`);
    return rows[0];
  });

  app.get('/codes', async () => ({
    codes: await app.db.executeQuery('SELECT code, title, year FROM building_codes ORDER BY code'),
  }));

  app.post<{ Body: { name: string; type: JurisdictionType } }>(
    '/jurisdictions',
    {
      schema: {
        body: {
          type: 'object',
          required: ['name', 'type'],
          properties: {
            name: text(200),
            type: { type: 'string', enum: JURISDICTION_TYPES },
          },
          additionalProperties: false,
        },
      },
    },
    async (request, reply) => {
      const name = request.body.name.trim();
      if (name === '') throw new HttpError(400, 'body/name must not be blank.');
      const [created] = await app.db.executeQuery<Jurisdiction>(
        'INSERT INTO jurisdictions (name, type) VALUES ($1, $2) RETURNING id, name, type, created_at AS "createdAt"',
        [name, request.body.type],
        { readOnly: false },
      );
      return reply.code(201).header('location', `/jurisdictions/${created!.id}`).send(created);
    },
  );

  app.post<{ Params: { id: string }; Body: { codes: string[] } }>(
    '/jurisdictions/:id/codes',
    {
      schema: {
        params: ID_PARAMS,
        body: {
          type: 'object',
          required: ['codes'],
          properties: {
            codes: {
              type: 'array',
              minItems: 1,
              maxItems: 50,
              uniqueItems: true,
              items: text(50),
            },
          },
          additionalProperties: false,
        },
      },
    },
    async (request) => {
      const id = idOf(request.params);
      // One transaction: an unknown code rolls back the codes inserted before it.
      return app.db.withDb(false, async (client) => {
        const found = await client.query('SELECT id FROM jurisdictions WHERE id = $1 FOR UPDATE', [id]);
        if (found.rowCount === 0) throw new HttpError(404, `Jurisdiction ${id} does not exist.`);
        const adopted: string[] = [];
        const alreadyAdopted: string[] = [];
        const unknown: string[] = [];
        for (const code of request.body.codes) {
          const inserted = await client.query(
            `INSERT INTO jurisdiction_codes (jurisdiction_id, code_id)
           SELECT $1, id FROM building_codes WHERE code = $2
           ON CONFLICT DO NOTHING RETURNING code_id`,
            [id, code],
          );
          if (inserted.rowCount === 1) {
            adopted.push(code);
            continue;
          }
          const known = await client.query('SELECT 1 FROM building_codes WHERE code = $1', [code]);
          (known.rowCount === 0 ? unknown : alreadyAdopted).push(code);
        }
        if (unknown.length > 0)
          throw new HttpError(
            400,
            `Unknown building code${unknown.length === 1 ? '' : 's'}: ${unknown.join(', ')}. Nothing was adopted.`,
          );
        return { jurisdictionId: id, adopted, alreadyAdopted };
      });
    },
  );
}
