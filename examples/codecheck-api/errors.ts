/**
 * HTTP answers for errors. Response bodies carry a status and one sentence written here, never the
 * database's own message, SQL text, DETAIL (which may quote a row's values) or connection settings;
 * the full error goes to the log.
 */
import { STATUS_CODES } from 'node:http';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import {
  DatabaseConnectionError,
  DatabaseQueryError,
  DatabaseTransactionError,
  DbError,
  PoolTimeoutError,
} from './codecheck-db.js';

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

/** A path id: 1 to 10 decimal digits, no sign, leading zero, exponent or prefix. */
export const ID_PATTERN = '^[1-9][0-9]{0,9}$';
/** Text without control characters (U+0000–U+001F, U+007F). */
export const TEXT_PATTERN = '^[^\\u0000-\\u001f\\u007f]*$';
export const ID_MESSAGE = 'params/id must be a whole number from 1 to 2147483647.';

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
    case '57014':
      return { statusCode: 503, message: 'The database did not answer in time. Try again shortly.', headers: RETRY_LATER };
  }
  // Class 22, data exceptions: a value the client sent that the server cannot use (format, range,
  // encoding such as a NUL byte). The client's mistake, never ours.
  if (error.sqlState?.startsWith('22'))
    return { statusCode: 400, message: 'A value in the request has the wrong format or is out of range.' };
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
  if (first.keyword === 'additionalProperties')
    return `${where} must not have the property '${String((first.params as { additionalProperty?: unknown }).additionalProperty)}'.`;
  const pattern = (first.params as { pattern?: unknown }).pattern;
  if (first.keyword === 'pattern' && pattern === ID_PATTERN) return ID_MESSAGE.replace('params/id', where);
  if (first.keyword === 'pattern' && pattern === TEXT_PATTERN) return `${where} must not contain control characters.`;
  return `${where} ${first.message ?? 'is invalid'}.`;
}

/**
 * What is logged about an error. A database error is logged as its class, code, SQLSTATE and message
 * (which the library keeps free of bound values), never with its `cause`: pino's `err` serializer
 * appends the cause's message, and the server's own message may quote a value the client sent.
 */
function sqlStateOf(error: unknown): string | undefined {
  return error instanceof DatabaseQueryError || error instanceof DatabaseTransactionError ? error.sqlState : undefined;
}

function loggable(error: unknown): unknown {
  if (!(error instanceof DbError)) return error;
  return { type: error.name, code: error.code, sqlState: sqlStateOf(error), message: error.message };
}

/**
 * The app's error handler: answer from {@link toErrorAnswer}. 5xx are logged as errors (an unexpected
 * error with its stack); a client's mistake (4xx) is one info line without a stack.
 */
export function handleError(error: unknown, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const answer = toErrorAnswer(error);
  if (answer.statusCode >= 500) request.log.error({ err: loggable(error) }, 'request failed');
  else {
    const { code, message } = error as { code?: unknown; message?: unknown };
    request.log.info(
      {
        statusCode: answer.statusCode,
        code,
        sqlState: sqlStateOf(error),
        reason: error instanceof DbError ? message : answer.message,
      },
      'request rejected',
    );
  }
  return reply
    .code(answer.statusCode)
    .headers(answer.headers ?? {})
    .send({ statusCode: answer.statusCode, error: STATUS_CODES[answer.statusCode], message: answer.message });
}
