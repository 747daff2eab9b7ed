/**
 * HTTP answers for errors. Response bodies carry a status and one sentence written here, never the
 * database's own message, SQL text, DETAIL (which may quote a row's values) or connection settings;
 * the full error goes to the log.
 */
import { STATUS_CODES } from 'node:http';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { DatabaseConnectionError, DatabaseQueryError, DatabaseTransactionError, PoolTimeoutError } from './codecheck-db.js';

/** An error a route throws on purpose: its message is written for the client. */
export class HttpError extends Error {
  readonly statusCode: number;
  constructor(statusCode: number, message: string) {
    super(message);
    this.statusCode = statusCode;
  }
}

/** What the client gets. */
export interface ErrorAnswer {
  readonly statusCode: number;
  readonly message: string;
  readonly headers?: Readonly<Record<string, string>>;
}

/** Unique and check constraints of schema.ts, in the client's words. */
const CONSTRAINT_MESSAGES: Readonly<Record<string, string>> = {
  jurisdictions_name_key: 'A jurisdiction with this name already exists.',
  jurisdictions_name_check: 'name must not be blank and at most 200 characters long.',
  jurisdictions_type_check: 'type must be one of: city, county, state.',
  building_codes_code_key: 'A building code with this code already exists.',
};

const RETRY_LATER = { 'retry-after': '1' } as const;

/** Maps an error to its HTTP answer (see docs in the example's README). */
export function toErrorAnswer(error: unknown): ErrorAnswer {
  if (error instanceof HttpError) return { statusCode: error.statusCode, message: error.message };
  const fastifyError = error as Partial<FastifyError>;
  if (fastifyError.validation) return { statusCode: 400, message: validationMessage(fastifyError as FastifyError) };
  if (error instanceof PoolTimeoutError)
    return {
      statusCode: 503,
      message: 'The database is busy: no connection became free in time. Try again shortly.',
      headers: RETRY_LATER,
    };
  if (error instanceof DatabaseConnectionError)
    return { statusCode: 503, message: 'The database is unavailable. Try again shortly.', headers: RETRY_LATER };
  if (error instanceof DatabaseQueryError) return queryAnswer(error);
  if (error instanceof DatabaseTransactionError && error.code === 'SERIALIZATION_FAILURE') {
    return { statusCode: 503, message: 'The request conflicted with concurrent changes. Try again.', headers: RETRY_LATER };
  }
  // Fastify's own client errors (malformed JSON, wrong content type, body too large) say what is wrong.
  const status = fastifyError.statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500)
    return { statusCode: status, message: fastifyError.message ?? STATUS_CODES[status]! };
  return { statusCode: 500, message: 'Something went wrong on our side; it has been logged.' };
}

function queryAnswer(error: DatabaseQueryError): ErrorAnswer {
  const known = error.constraint === undefined ? undefined : CONSTRAINT_MESSAGES[error.constraint];
  switch (error.sqlState) {
    case '23505':
      return { statusCode: 409, message: known ?? 'The request conflicts with an existing record.' };
    case '23503':
      return { statusCode: 400, message: 'The request refers to a record that does not exist.' };
    case '23514':
      return { statusCode: 400, message: known ?? 'A value in the request is not allowed.' };
    case '23502':
      return { statusCode: 400, message: 'A required value is missing.' };
    case '22P02':
    case '22003':
    case '22001':
      return { statusCode: 400, message: 'A value in the request has the wrong format or is out of range.' };
    case '57014':
      return { statusCode: 503, message: 'The database did not answer in time. Try again shortly.', headers: RETRY_LATER };
  }
  if (error.code === 'QUERY_CANCELLED')
    return { statusCode: 503, message: 'The database did not answer in time. Try again shortly.', headers: RETRY_LATER };
  return { statusCode: 500, message: 'Something went wrong on our side; it has been logged.' };
}

/** `body/type must be one of: city, county, state` rather than ajv's "equal to one of the allowed values". */
function validationMessage(error: FastifyError): string {
  const first = error.validation?.[0];
  if (!first) return error.message;
  const where = `${error.validationContext ?? 'request'}${first.instancePath}`;
  const allowed = (first.params as { allowedValues?: unknown[] }).allowedValues;
  if (first.keyword === 'enum' && Array.isArray(allowed)) return `${where} must be one of: ${allowed.join(', ')}.`;
  if (first.keyword === 'required')
    return `${where} must have the property '${String((first.params as { missingProperty?: unknown }).missingProperty)}'.`;
  return `${where} ${first.message ?? 'is invalid'}.`;
}

/** The app's error handler: answer from {@link toErrorAnswer}, log 5xx as errors with the full cause. */
export function handleError(error: unknown, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const answer = toErrorAnswer(error);
  if (answer.statusCode >= 500) request.log.error({ err: error }, 'request failed');
  else request.log.info({ err: error, statusCode: answer.statusCode }, 'request rejected');
  return reply
    .code(answer.statusCode)
    .headers(answer.headers ?? {})
    .send({ statusCode: answer.statusCode, error: STATUS_CODES[answer.statusCode], message: answer.message });
}
