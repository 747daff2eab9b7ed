/**
 * An in-process TCP proxy on 127.0.0.1 that injects network faults between a client and a server:
 * resets, black holes, stalls and latency.
 */
import { connect, createServer, type Socket } from 'node:net';

/** What the proxy does with traffic: forward it, swallow it, or hold it until {@link FaultProxy.heal}. */
export type FaultMode = 'pass' | 'blackhole' | 'stall';

/** Where {@link startFaultProxy} forwards to. */
export interface FaultProxyOptions {
  targetHost: string;
  targetPort: number;
}

/** A running fault proxy; point clients at `host`:`port`. */
export interface FaultProxy {
  readonly host: string;
  readonly port: number;
  readonly mode: FaultMode;
  /** Delay added to each chunk, in each direction. */
  readonly latencyMillis: number;
  /** Client connections currently open through the proxy. */
  readonly activeConnections: number;
  /** Resets (RST) every open client and upstream socket; new connections are still accepted. */
  cut(): void;
  /** New and open connections stay open but nothing is forwarded or answered; data is swallowed. */
  blackhole(): void;
  /**
   * The connections open now go silent (nothing forwarded either way, no FIN, no RST: a lost NAT
   * entry) while new connections still pass; {@link heal} closes the silent ones.
   */
  silenceOpen(): void;
  /** Stops reading from both sides (data waits in TCP buffers) until {@link heal}, which delivers it. */
  stall(): void;
  /**
   * The server's bytes to every client are held in the proxy (the client's still reach the server)
   * until {@link heal}, which writes each link's held bytes in one go: messages the server sent apart
   * reach the client in one read, as on a busy client or a congested return path.
   */
  holdReplies(): void;
  /** Delays each chunk in both directions by `ms` (order is kept). */
  setLatency(ms: number): void;
  /**
   * New connections go to `target` from now on, as when a DNS name moves to another server; open
   * connections stay with the server they reached.
   */
  retarget(target: { host: string; port: number }): void;
  /** Back to pass-through with no latency; black-holed connections are closed so clients notice. */
  heal(): void;
  /** Closes the listener and every socket; resolves when nothing is left open. */
  close(): Promise<void>;
}

interface Link {
  client: Socket;
  upstream?: Socket;
  toUpstream?: Pump;
  toClient?: Pump;
  blackholed: boolean;
}

interface ProxyState {
  mode: FaultMode;
  latencyMillis: number;
  /** Server-to-client chunks wait in their pump (see {@link FaultProxy.holdReplies}). */
  isHoldingReplies: boolean;
}

/** Forwards one direction of a link, holding each chunk until its due time. */
class Pump {
  private queue: { due: number; chunk: Buffer }[] = [];
  private timer: NodeJS.Timeout | undefined;
  private ending = false;
  private waitingForDrain = false;

  constructor(
    private readonly src: Socket,
    private readonly dst: Socket,
    private readonly state: ProxyState,
    /** Towards the client: held while {@link ProxyState.isHoldingReplies}. */
    private readonly isReply: boolean,
  ) {}

  get idle(): boolean {
    return this.queue.length === 0;
  }

  push(chunk: Buffer): void {
    const due = Math.max(Date.now() + this.state.latencyMillis, this.queue.at(-1)?.due ?? 0);
    this.queue.push({ due, chunk });
    this.flush();
  }

  /** Ends `dst` once every queued chunk has been written. */
  end(): void {
    this.ending = true;
    this.flush();
  }

  /** Makes every queued chunk due now (after a heal) and writes what it can. */
  release(): void {
    for (const item of this.queue) item.due = 0;
    this.flush();
  }

  clear(): void {
    this.queue = [];
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.state.mode !== 'pass' || this.dst.destroyed) return;
    if (this.isReply && this.state.isHoldingReplies) return;
    const now = Date.now();
    while (this.queue[0] && this.queue[0].due <= now) {
      const { chunk } = this.queue.shift()!;
      if (!this.dst.write(chunk) && !this.waitingForDrain) {
        this.waitingForDrain = true;
        this.src.pause();
        this.dst.once('drain', () => {
          this.waitingForDrain = false;
          if (this.state.mode === 'pass') this.src.resume();
        });
      }
    }
    if (this.queue[0]) {
      this.timer = setTimeout(() => this.flush(), this.queue[0].due - now);
      this.timer.unref();
    } else if (this.ending) {
      this.dst.end();
    }
  }
}

/** Starts a proxy on a free 127.0.0.1 port forwarding to `targetHost:targetPort`, in pass-through mode. */
export async function startFaultProxy(options: FaultProxyOptions): Promise<FaultProxy> {
  const state: ProxyState = { mode: 'pass', latencyMillis: 0, isHoldingReplies: false };
  const target = { host: options.targetHost, port: options.targetPort };
  const links = new Set<Link>();

  const drop = (link: Link, reset = false): void => {
    links.delete(link);
    link.toUpstream?.clear();
    link.toClient?.clear();
    for (const socket of [link.client, link.upstream]) {
      if (!socket || socket.destroyed) continue;
      if (reset) {
        try {
          socket.resetAndDestroy();
        } catch {
          socket.destroy();
        }
      } else {
        socket.destroy();
      }
    }
  };

  /** When `from` closes, close the link once `pump` (towards the other side) has delivered its data. */
  const onClose = (link: Link, pump: Pump | undefined) => (hadError: boolean) => {
    if (hadError || link.blackholed || !pump || pump.idle) drop(link);
    else pump.end();
  };

  const server = createServer((client) => {
    client.setNoDelay(true);
    const link: Link = { client, blackholed: state.mode === 'blackhole' };
    links.add(link);
    client.on('error', () => drop(link));
    if (link.blackholed) {
      client.on('data', () => undefined);
      client.on('close', () => drop(link));
      return;
    }
    const upstream = connect({ host: target.host, port: target.port });
    upstream.setNoDelay(true);
    const toUpstream = new Pump(client, upstream, state, false);
    const toClient = new Pump(upstream, client, state, true);
    Object.assign(link, { upstream, toUpstream, toClient });
    upstream.on('error', () => drop(link));
    client.on('data', (chunk: Buffer) => link.blackholed || toUpstream.push(chunk));
    upstream.on('data', (chunk: Buffer) => link.blackholed || toClient.push(chunk));
    client.on('end', () => (link.blackholed ? drop(link) : toUpstream.end()));
    upstream.on('end', () => (link.blackholed ? undefined : toClient.end()));
    client.on('close', onClose(link, toUpstream));
    upstream.on('close', onClose(link, toClient));
    if (state.mode === 'stall') {
      client.pause();
      upstream.pause();
    }
  });
  server.unref();

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  if (!address || typeof address !== 'object') throw new Error('fault proxy has no address');

  let closing: Promise<void> | undefined;
  const sockets = (link: Link): Socket[] => (link.upstream ? [link.client, link.upstream] : [link.client]);
  const silence = (): void => {
    for (const link of links) {
      link.blackholed = true;
      link.toUpstream?.clear();
      link.toClient?.clear();
      for (const socket of sockets(link)) socket.resume(); // keep swallowing, even after a stall
    }
  };

  return {
    host: '127.0.0.1',
    port: address.port,
    get mode() {
      return state.mode;
    },
    get latencyMillis() {
      return state.latencyMillis;
    },
    get activeConnections() {
      return links.size;
    },
    cut() {
      for (const link of [...links]) drop(link, true);
    },
    blackhole() {
      state.mode = 'blackhole';
      silence();
    },
    silenceOpen() {
      silence();
    },
    stall() {
      if (state.mode === 'blackhole') return;
      state.mode = 'stall';
      for (const link of links) for (const socket of sockets(link)) socket.pause();
    },
    holdReplies() {
      state.isHoldingReplies = true;
    },
    retarget(next: { host: string; port: number }) {
      target.host = next.host;
      target.port = next.port;
    },
    setLatency(ms: number) {
      if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`latency must be a finite number >= 0, got ${ms}`);
      state.latencyMillis = ms;
    },
    heal() {
      state.mode = 'pass';
      state.latencyMillis = 0;
      state.isHoldingReplies = false;
      for (const link of [...links]) {
        if (link.blackholed) {
          drop(link);
          continue;
        }
        for (const socket of sockets(link)) socket.resume();
        link.toUpstream?.release();
        link.toClient?.release();
      }
    },
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const link of [...links]) drop(link);
      });
      return closing;
    },
  };
}
