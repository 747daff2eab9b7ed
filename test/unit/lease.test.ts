import { describe, expect, it } from 'vitest';
import type pg from 'pg';
import {
  isRecentlyUsed,
  markBroken,
  markLost,
  newConnectionFacts,
  newLease,
  statementAnswered,
  statementSent,
  type LeaseOwner,
} from '../../src/pool/lease.js';

const owner: LeaseOwner = {
  name: 'primary',
  server: { serverAddress: 'localhost', serverPort: 5432, database: 'postgres', poolName: 'primary' },
  release: () => undefined,
  cancel: async () => true,
  abandon: () => undefined,
  markNotPrimary: () => false,
};
const lease = () => newLease({} as pg.PoolClient, owner, true);

describe('lease bookkeeping', () => {
  it('counts every unanswered statement, and of those the caller’s, and when the first one was sent', () => {
    const held = lease();
    statementSent(held, false, 100);
    statementSent(held, true, 200);
    expect([held.unanswered, held.callerUnanswered, held.busySince]).toEqual([2, 1, 100]);
    statementAnswered(held, true);
    expect([held.unanswered, held.callerUnanswered, held.busySince]).toEqual([1, 0, 100]);
    statementAnswered(held, false);
    expect([held.unanswered, held.callerUnanswered, held.busySince]).toEqual([0, 0, 0]);
  });

  it('keeps the first connection error that broke a lease, and marks it broken', () => {
    const held = lease();
    const first = new Error('terminating connection due to administrator command');
    markLost(held, first);
    markLost(held, new Error('Connection terminated unexpectedly'));
    expect([held.isBroken, held.lostError]).toEqual([true, first]);
  });

  it('marks a lease broken without an error of its own', () => {
    const held = lease();
    markBroken(held);
    expect([held.isBroken, held.lostError]).toEqual([true, undefined]);
  });
});

describe('connection facts', () => {
  it('retires a connection within the last 10% before its max lifetime, and never with 0', () => {
    for (let i = 0; i < 100; i++) {
      const { retireAt } = newConnectionFacts(0, 1000, true);
      expect(retireAt > 900 && retireAt <= 1000, String(retireAt)).toBe(true);
    }
    expect(newConnectionFacts(0, 0, true).retireAt).toBe(Infinity);
  });

  it('counts a connection idle no longer than the validation interval as recently used, and none with interval 0', () => {
    const facts = newConnectionFacts(1000, 0, true);
    expect([isRecentlyUsed(facts, 2000, 1000), isRecentlyUsed(facts, 2001, 1000), isRecentlyUsed(facts, 1000, 0)]).toEqual([
      true,
      false,
      false,
    ]);
  });
});
