import { describe, expect, test } from 'vitest';
import { classifyTransactionControl } from '../../src/nested-transactions.js';

describe('classifyTransactionControl', () => {
  test.each([
    ['begin', 'begin'],
    ['BEGIN WORK;', 'begin'],
    ['  -- a comment\n/* another */ START TRANSACTION', 'begin'],
    ['commit', 'commit'],
    ['END TRANSACTION', 'commit'],
    ['COMMIT AND NO CHAIN', 'commit'],
    ['rollback', 'rollback'],
    ['ABORT WORK ;', 'rollback'],
  ])('reads %j as %s', (text, kind) => {
    expect(classifyTransactionControl(text)).toEqual({ kind });
  });

  test.each([
    'BEGIN ISOLATION LEVEL SERIALIZABLE',
    'start transaction read only',
    'COMMIT AND CHAIN',
    'rollback and chain',
    "PREPARE TRANSACTION 't1'",
    "COMMIT PREPARED 't1'",
    "ROLLBACK PREPARED 't1'",
  ])('refuses %j', (text) => {
    expect(classifyTransactionControl(text)?.kind).toBe('refuse');
  });

  test.each([
    'SELECT 1',
    'ROLLBACK TO SAVEPOINT sp1',
    'SAVEPOINT sp1',
    'RELEASE SAVEPOINT sp1',
    'beginning_of_table',
    'BEGIN; SELECT 1',
    "INSERT INTO t VALUES ('commit')",
    'PREPARE q AS SELECT 1',
  ])('leaves %j alone', (text) => {
    expect(classifyTransactionControl(text)).toBeUndefined();
  });
});
