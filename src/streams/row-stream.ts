import { Readable } from 'node:stream';
import type { BatchSource } from './cursor-reader.js';

/**
 * The rows of one statement, read through a cursor in batches: iterate it once with `for await`, or
 * turn it into a Node Readable with {@link toReadable} for `stream.pipeline`. Nothing is sent to the
 * server until iteration starts. Leaving the loop early (`break`, `return`, a throw in the loop body)
 * closes the cursor and frees the connection before the loop statement completes.
 *
 * Why an AsyncIterable first: `for await` is how most code reads rows, and its `return()` gives an
 * exact moment to close the cursor; a Readable adds a second buffer (its highWaterMark) on top of the
 * cursor's batch and reports early exits through `destroy()`, which cannot be awaited.
 */
export class RowStream<R> implements AsyncIterable<R> {
  #open: () => Promise<BatchSource<R>>;
  #countRefusal: (() => void) | undefined;
  #isUsed = false;

  /**
   * @param open - called once, on the first `next()`: sends the statement and gives its batches.
   * @param countRefusal - counts a second iteration as a failed call (`db.stream`; inside withDb the call's own rejection counts).
   */
  constructor(open: () => Promise<BatchSource<R>>, countRefusal?: () => void) {
    this.#open = open;
    this.#countRefusal = countRefusal;
  }

  /**
   * The one iterator of this stream.
   * @throws {TypeError} when the stream was already iterated (a cursor is read once).
   */
  [Symbol.asyncIterator](): AsyncIterator<R> {
    if (this.#isUsed) {
      this.#countRefusal?.();
      throw new TypeError('This row stream was already iterated; a stream can be read only once');
    }
    this.#isUsed = true;
    return new RowIterator(this.#open);
  }

  /**
   * The same rows as an object-mode Node Readable (for `pipeline`). Destroying it, or a failing
   * destination in a pipeline, closes the cursor as `break` does.
   */
  toReadable(): Readable {
    return Readable.from(this, { objectMode: true, highWaterMark: 1 });
  }
}

/** Hands out the rows of the current batch without a round trip; fetches the next when it runs out. */
class RowIterator<R> implements AsyncIterator<R> {
  #open: () => Promise<BatchSource<R>>;
  #source: BatchSource<R> | undefined;
  #batch: R[] = [];
  #index = 0;
  #isDone = false;

  constructor(open: () => Promise<BatchSource<R>>) {
    this.#open = open;
  }

  next(): Promise<IteratorResult<R>> {
    // The hot path: one resolved promise per row, no async function frame.
    if (this.#index < this.#batch.length) return Promise.resolve({ value: this.#batch[this.#index++]!, done: false });
    return this.#fill();
  }

  async #fill(): Promise<IteratorResult<R>> {
    this.#batch = [];
    this.#index = 0;
    if (this.#isDone) return { value: undefined, done: true };
    try {
      if (!this.#source) {
        this.#source = await this.#open();
        // Cancelled (signal, timeout) or given up (idle limit): rows of the batch in hand are dropped,
        // so the next step asks the source, which rejects.
        this.#source.onHalt(() => {
          this.#batch = [];
          this.#index = 0;
        });
      }
      const rows = await this.#source.read();
      if (rows.length === 0) {
        this.#isDone = true;
        return { value: undefined, done: true };
      }
      this.#batch = rows;
      this.#index = 1;
      return { value: rows[0]!, done: false };
    } catch (error) {
      this.#isDone = true;
      throw error;
    }
  }

  /** `break` / `return` / a throw in the loop body: close the cursor before the loop completes. */
  async return(): Promise<IteratorResult<R>> {
    this.#batch = [];
    if (!this.#isDone) {
      this.#isDone = true;
      await this.#source?.close();
    }
    return { value: undefined, done: true };
  }
}
