import type pg from 'pg';
import type { Logger } from 'pino';
import { destroySocket } from '../client-internals.js';
import { summarize } from '../error-summary.js';
import { DatabaseConnectionError, PoolClosedError } from '../errors.js';
import type { ListenerStats } from '../stats.js';
import { raceDeadline, sleep, startInterval, startTimer } from '../timers.js';
import { checkChannel, quoteChannel } from './channel.js';

/** What a handler receives besides the payload. */
export interface Notification {
  readonly channel: string;
  readonly payload: string;
  /** The server process that sent the NOTIFY. */
  readonly processId: number;
}

/** Called for each notification on the channel; a throw or rejection is logged, never fatal. */
export type NotificationHandler = (payload: string, notification: Notification) => void | Promise<void>;

/** Options of `db.listen`. */
export interface ListenOptions {
  /**
   * Called once after each reconnection of the listener (server restart, terminated backend, network
   * loss), once every channel is listened to again: notifications sent while it was down are lost, so
   * resync here. A throw or rejection is logged.
   */
  onReconnect?: () => void | Promise<void>;
}

/** What `db.listen` resolves with. */
export interface Subscription {
  readonly channel: string;
  /** Stops this handler; the channel is UNLISTENed once no handler is left. Idempotent, never rejects. */
  unlisten(): Promise<void>;
}

/** How the listener connects and how patient it is. */
export interface ListenerSettings {
  /** A new, unconnected client to the server to listen on (its own TLS and login settings). */
  createClient(): pg.Client;
  /** How long `listen()` waits for the connection and its LISTEN. */
  connectTimeoutMillis: number;
  /** Interval of the keepalive ping on an idle listener connection. */
  keepaliveMillis: number;
  /** How long a keepalive ping may take before the connection counts as lost. */
  pingTimeoutMillis: number;
  /** It logs in as the pool does (no listen URL with a password of its own): `rotateCredentials()` renews it. */
  sharesPoolLogin: boolean;
  log: Logger;
}

interface Subscriber {
  readonly onNotification: NotificationHandler;
  readonly onReconnect: (() => void | Promise<void>) | undefined;
}

const BACKOFF_BASE_MILLIS = 100;
const BACKOFF_MAX_MILLIS = 5000;

/**
 * One dedicated connection (never from the pool) that LISTENs for every channel asked for. After any
 * loss (restart, terminate, network cut, a keepalive ping that goes unanswered) it reconnects with
 * jittered backoff, forever, LISTENs to every channel again, then calls each subscriber's
 * `onReconnect`. The connection is opened by the first `listen()` and closed when the last channel
 * is unlistened or on `close()`.
 */
export class Listener {
  #settings: ListenerSettings;
  #channels = new Map<string, Set<Subscriber>>();
  #client: pg.Client | undefined;
  #state: 'idle' | 'connecting' | 'connected' | 'closed' = 'idle';
  /** Wakes callers of {@link #whenConnected} (listen) when a connection is up, or when closing. */
  #waiters = new Set<() => void>();
  #keepalive: NodeJS.Timeout | undefined;
  #retryTimer: NodeJS.Timeout | undefined;
  #hasConnectedBefore = false;
  #reconnects = 0;
  #notificationsReceived = 0;

  constructor(settings: ListenerSettings) {
    this.#settings = settings;
  }

  stats(): ListenerStats {
    return Object.freeze({
      connected: this.#state === 'connected',
      channels: this.#channels.size,
      reconnects: this.#reconnects,
      notificationsReceived: this.#notificationsReceived,
    });
  }

  /**
   * Adds a handler for `channel` and resolves once the server listens to it, so a NOTIFY sent after
   * this resolves is delivered.
   * @throws {TypeError} for a malformed channel or handler.
   * @throws {DatabaseConnectionError} `CONNECTION_FAILED` when the listener connection or its LISTEN
   * did not succeed within `connectTimeoutMillis` (the handler is removed).
   * @throws {PoolClosedError} after `close()`.
   */
  async listen(channel: string, onNotification: NotificationHandler, options: ListenOptions = {}): Promise<Subscription> {
    checkChannel(channel);
    if (typeof onNotification !== 'function') throw new TypeError('listen needs a handler: listen(channel, (payload) => ...)');
    if (options.onReconnect !== undefined && typeof options.onReconnect !== 'function')
      throw new TypeError('onReconnect must be a function');
    if (this.#state === 'closed') throw new PoolClosedError();
    const subscriber: Subscriber = { onNotification, onReconnect: options.onReconnect };
    let subscribers = this.#channels.get(channel);
    const isNewChannel = subscribers === undefined;
    if (!subscribers) this.#channels.set(channel, (subscribers = new Set()));
    subscribers.add(subscriber);
    const subscription: Subscription = Object.freeze({ channel, unlisten: () => this.#unlisten(channel, subscriber) });
    if (!isNewChannel && this.#state === 'connected') return subscription;
    const deadline = Date.now() + this.#settings.connectTimeoutMillis;
    let lastError: unknown;
    this.#start();
    // A connection made after the channel was added LISTENs to it as part of connecting; one that
    // was already up needs its own LISTEN. A loss in between is retried until the deadline.
    while (Date.now() < deadline && !this.#isClosed()) {
      const client = await this.#whenConnected(deadline);
      if (!client) break;
      try {
        // A connection that went silent but is not yet known dead (the keepalive has not noticed)
        // would hold the LISTEN past the deadline: the caller gets CONNECTION_FAILED at the deadline.
        await raceDeadline(
          () => this.#send(client, `LISTEN ${quoteChannel(channel)}`),
          deadline - Date.now(),
          () => {
            throw new Error('the server did not answer LISTEN');
          },
          'ref',
        );
        return subscription;
      } catch (error) {
        lastError = error;
        // 'ref': a caller awaits this listen() (see #whenConnected).
        if (this.#client === client) await sleep(10, 'ref');
      }
    }
    if (this.#isClosed()) throw new PoolClosedError();
    // Not awaited: its UNLISTEN would queue behind a LISTEN still unanswered on a silent connection.
    void this.#unlisten(channel, subscriber);
    throw new DatabaseConnectionError(
      `The notification listener could not LISTEN on ${JSON.stringify(channel)} within ${this.#settings.connectTimeoutMillis} ms${
        lastError || this.#lastError ? `: ${summarize(lastError ?? this.#lastError).message}` : ''
      }`,
      { cause: lastError ?? this.#lastError },
    );
  }

  #lastError: unknown;

  /** A method, not a field comparison, so TypeScript does not narrow the state across awaits. */
  #isClosed(): boolean {
    return this.#state === 'closed';
  }

  async #unlisten(channel: string, subscriber: Subscriber): Promise<void> {
    const subscribers = this.#channels.get(channel);
    if (!subscribers?.delete(subscriber) || subscribers.size > 0) return;
    this.#channels.delete(channel);
    if (this.#channels.size === 0) {
      this.#stop();
      return;
    }
    // The connection may be lost meanwhile; a new one only LISTENs to the channels left, so this may fail quietly.
    if (this.#client) await this.#send(this.#client, `UNLISTEN ${quoteChannel(channel)}`).catch(() => undefined);
  }

  /** Closes the connection and stops reconnecting; later `listen()` calls reject. Idempotent. */
  async close(): Promise<void> {
    if (this.#state === 'closed') return;
    this.#channels.clear();
    this.#stop();
    this.#state = 'closed';
  }

  /** Opens the connection unless it is open or opening. */
  #start(): void {
    if (this.#state !== 'idle') return;
    this.#state = 'connecting';
    this.#connect(0);
  }

  /** Ends the connection and any retry; back to idle (or closed, set by the caller). */
  #stop(): void {
    clearTimeout(this.#retryTimer);
    clearInterval(this.#keepalive);
    this.#keepalive = undefined;
    const client = this.#client;
    this.#client = undefined;
    if (this.#state !== 'closed') this.#state = 'idle';
    for (const wake of this.#waiters) wake();
    if (client) endClient(client);
  }

  /** One connection attempt; on failure, the next after a jittered backoff. */
  #connect(attempt: number): void {
    const client = this.#settings.createClient();
    client.on('error', (error: Error) => {
      this.#lastError = error;
    });
    client.on('notification', (message: pg.Notification) => this.#dispatch(message));
    const open = async () => {
      await client.connect();
      const channels = [...this.#channels.keys()];
      if (channels.length > 0) await client.query(channels.map((name) => `LISTEN ${quoteChannel(name)}`).join('; '));
    };
    open().then(
      () => {
        if (this.#state !== 'connecting') return endClient(client);
        this.#client = client;
        this.#state = 'connected';
        client.once('end', () => this.#onLost(client));
        this.#keepalive = startInterval(this.#settings.keepaliveMillis, () => this.#ping(client), 'unref');
        const isReconnect = this.#hasConnectedBefore;
        this.#hasConnectedBefore = true;
        for (const wake of this.#waiters) wake();
        if (isReconnect) {
          this.#reconnects++;
          this.#settings.log.info({ channels: this.#channels.size }, 'notification listener reconnected');
          this.#callReconnectHandlers();
        }
      },
      (error: unknown) => {
        this.#lastError = error;
        endClient(client);
        if (this.#state !== 'connecting') return;
        const delay = Math.min(BACKOFF_MAX_MILLIS, BACKOFF_BASE_MILLIS * 2 ** Math.min(attempt, 10)) * (0.5 + Math.random() / 2);
        if (attempt === 0 || attempt % 10 === 0)
          this.#settings.log.warn(
            { error: summarize(error), attempt: attempt + 1 },
            'notification listener could not connect; retrying',
          );
        this.#retryTimer = startTimer(delay, () => this.#connect(attempt + 1), 'unref');
      },
    );
  }

  /**
   * After `rotateCredentials()`: when it logs in as the pool does, the open connection is replaced by
   * one with the new login (so no session of the old login or user is left), as after a lost
   * connection: LISTEN again on every channel, then `onReconnect` (notifications sent in between are
   * missed). False when there was nothing to renew.
   */
  renew(): boolean {
    const client = this.#client;
    if (!this.#settings.sharesPoolLogin || this.#state !== 'connected' || client === undefined) return false;
    this.#settings.log.info({ channels: this.#channels.size }, 'notification listener reconnecting with the rotated login');
    this.#reconnect(client);
    endClient(client);
    return true;
  }

  #onLost(client: pg.Client): void {
    if (this.#client !== client) return;
    if (this.#state === 'connected')
      this.#settings.log.warn(
        { error: this.#lastError ? summarize(this.#lastError) : undefined },
        'notification listener connection lost; reconnecting',
      );
    this.#reconnect(client);
  }

  /** Lets go of `client` (the current connection) and, while connected, opens the next one. */
  #reconnect(client: pg.Client): void {
    if (this.#client !== client) return;
    this.#client = undefined;
    clearInterval(this.#keepalive);
    this.#keepalive = undefined;
    if (this.#state !== 'connected') return;
    this.#state = 'connecting';
    this.#connect(0);
  }

  /** A round trip with a deadline: a black-holed link is noticed, and the connection replaced. */
  #ping(client: pg.Client): void {
    const timer = startTimer(this.#settings.pingTimeoutMillis, () => destroySocket(client), 'unref');
    this.#send(client, 'SELECT 1').then(
      () => clearTimeout(timer),
      () => {
        clearTimeout(timer);
        destroySocket(client);
      },
    );
  }

  #dispatch(message: pg.Notification): void {
    const subscribers = this.#channels.get(message.channel);
    if (!subscribers) return;
    this.#notificationsReceived++;
    const notification: Notification = Object.freeze({
      channel: message.channel,
      payload: message.payload ?? '',
      processId: message.processId,
    });
    for (const subscriber of subscribers)
      this.#call(() => subscriber.onNotification(notification.payload, notification), 'handler');
  }

  #callReconnectHandlers(): void {
    for (const subscribers of this.#channels.values())
      for (const subscriber of subscribers) if (subscriber.onReconnect) this.#call(subscriber.onReconnect, 'onReconnect');
  }

  /** Runs a caller's callback; its throw or rejection is logged (never the payload). */
  #call(callback: () => void | Promise<void>, what: string): void {
    const report = (error: unknown) =>
      this.#settings.log.error({ error: summarize(error) }, `a notification listener's ${what} failed`);
    try {
      const result = callback();
      if (result && typeof (result as Promise<void>).then === 'function') (result as Promise<void>).then(undefined, report);
    } catch (error) {
      report(error);
    }
  }

  /**
   * One statement at a time on the listener's connection (pg deprecates queueing on a busy client):
   * LISTEN, UNLISTEN and pings wait for each other.
   */
  #send(client: pg.Client, text: string): Promise<unknown> {
    const sent = this.#tail.then(() => client.query(text));
    this.#tail = sent.catch(() => undefined);
    return sent;
  }

  #tail: Promise<unknown> = Promise.resolve();

  /** The open connection, once there is one; undefined at the deadline or on close. */
  async #whenConnected(deadline: number): Promise<pg.Client | undefined> {
    while (this.#state !== 'connected' || !this.#client) {
      if (this.#state === 'closed' || this.#state === 'idle' || Date.now() >= deadline) return undefined;
      await new Promise<void>((resolve) => {
        // 'ref': a caller's listen() waits here, maybe with nothing else open (the listener's
        // connection is down and its reconnect timer is unref'd): it must get its CONNECTION_FAILED.
        const timer = startTimer(deadline - Date.now(), done, 'ref');
        const waiters = this.#waiters;
        function done() {
          clearTimeout(timer);
          waiters.delete(done);
          resolve();
        }
        waiters.add(done);
      });
    }
    return this.#client;
  }
}

/** Ends a client politely and destroys its socket, so a black-holed link holds no handle. */
function endClient(client: pg.Client): void {
  client.removeAllListeners('notification');
  void client.end().catch(() => undefined);
  destroySocket(client);
}
