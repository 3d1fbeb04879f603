/**
 * Misbehaving middlemen for the S3 tests, both on 127.0.0.1:
 *
 * - {@link lossyProxy}: a TCP proxy that forwards a chosen request, lets the
 *   server answer it, then drops the connection instead of passing the
 *   answer on: "the write happened but its response was lost".
 * - {@link chaosProxy}: a TCP proxy that drops a share of all answers after
 *   the server gave them (so writes land unseen) and delays the others, and
 *   counts the bytes it passes on.
 * - {@link strippingProxy}: an HTTP proxy that removes `If-Match` and
 *   `If-None-Match` from every request and signs it again (SigV4 covers those
 *   headers), so the server behind it looks like one that ignores conditional
 *   writes (as GCS's XML API and some others do).
 */
import { createServer as createHttpServer, request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { SignatureV4 } from '@smithy/signature-v4';
import { NodeSha256 } from '../../../src/backends/s3/direct.js';

export interface Proxy {
  readonly endpoint: string;
  close(): Promise<void>;
}

export interface LossyProxy extends Proxy {
  /** Status codes the server gave to requests whose answer was dropped. */
  readonly dropped: number[];
  /** Status codes of every request matching `watch`, dropped or not. */
  readonly watched: number[];
}

export interface LossyOptions {
  /** Requests (by their first bytes: request line and headers) whose status is recorded. */
  watch(head: string): boolean;
  /** Of the watched requests, those whose answer is dropped. Called once per watched request. */
  drop(head: string): boolean;
  /** Runs after the server answered a dropped request and before the client's connection is cut. */
  onDrop?(): Promise<void>;
}

/**
 * A `drop` rule: the first write conditioned on each ETag (each swap's
 * first try) loses its answer; its retries get through.
 */
export function dropFirstTryOfEachCondition(): (head: string) => boolean {
  const conditions = new Set<string>();
  return (head) => {
    const condition = /\r\nif-match: *([^\r\n]*)/i.exec(head)?.[1] ?? 'none';
    if (conditions.has(condition)) return false;
    conditions.add(condition);
    return true;
  };
}

function listen(server: { listen(port: number, host: string, cb: () => void): unknown; address(): unknown }): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));
}

/** See the module comment. `target` is an `http://host:port` endpoint. */
export async function lossyProxy(target: string, options: LossyOptions): Promise<LossyProxy> {
  const url = new URL(target);
  const dropped: number[] = [];
  const watched: number[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = connect(Number(url.port), url.hostname);
    sockets.add(client).add(upstream);
    let requestStarts = true;
    let isWatched = false;
    let isDropped = false;
    let statusSeen = false;
    client.on('data', (chunk: Buffer) => {
      if (requestStarts) {
        const head = chunk.toString('latin1', 0, Math.min(chunk.length, 4096));
        isWatched = options.watch(head);
        isDropped = isWatched && options.drop(head);
        statusSeen = false;
        requestStarts = false;
      }
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      // The client sends its next request only after this answer: the next client bytes start one.
      requestStarts = true;
      if (isWatched && !statusSeen) {
        statusSeen = true;
        const status = Number(/^HTTP\/1\.\d (\d{3})/.exec(chunk.toString('latin1', 0, 32))?.[1] ?? 0);
        watched.push(status);
        if (isDropped) {
          dropped.push(status);
          upstream.pause();
          void (options.onDrop?.() ?? Promise.resolve()).finally(() => {
            client.destroy();
            upstream.destroy();
          });
          return;
        }
      }
      if (!isDropped) client.write(chunk);
    });
    const end = (): void => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  const port = await listen(server);
  return {
    endpoint: `http://127.0.0.1:${port}`,
    dropped,
    watched,
    close: () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

export interface ChaosProxy extends Proxy {
  /** Answers dropped so far. */
  readonly dropped: () => number;
  /** Answers passed on so far. */
  readonly answered: () => number;
  /** Bytes of answers passed on to clients so far. */
  readonly bytesToClients: () => number;
  /** Changes the share of answers dropped from now on (1: a network partition after the server). */
  setLossRate(rate: number): void;
  /**
   * Drops the answer to the next request whose head matches, then every
   * answer for `ms` milliseconds: a write that landed, then a partition.
   */
  partitionAfterNext(match: (head: string) => boolean, ms: number): void;
}

/**
 * See the module comment. Each answer is dropped with probability `lossRate`
 * (the server has answered, so a write has landed) and otherwise delayed by
 * a uniform 0..`maxDelayMs` ms before its first byte is passed on. Keep-alive
 * connections carry one request at a time, so an answer's first bytes are
 * told apart as the first server bytes after client bytes.
 */
export async function chaosProxy(target: string, options: { lossRate: number; maxDelayMs: number }): Promise<ChaosProxy> {
  const url = new URL(target);
  let lossRate = options.lossRate;
  let armed: { match: (head: string) => boolean; ms: number } | undefined;
  let dropped = 0;
  let answered = 0;
  let bytes = 0;
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = connect(Number(url.port), url.hostname);
    sockets.add(client).add(upstream);
    let answerStarts = false;
    let head = '';
    // Answers go out in order: each chunk waits for the one before (and for its answer's delay).
    let queue = Promise.resolve();
    client.on('data', (chunk: Buffer) => {
      if (!answerStarts) head = chunk.toString('latin1', 0, Math.min(chunk.length, 2048));
      answerStarts = true;
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (answerStarts) {
        answerStarts = false;
        const partition = armed !== undefined && armed.match(head) ? armed : undefined;
        if (partition !== undefined) {
          armed = undefined;
          const rate = lossRate;
          lossRate = 1;
          setTimeout(() => (lossRate = rate), partition.ms);
        }
        if (partition !== undefined || Math.random() < lossRate) {
          dropped++;
          client.destroy();
          upstream.destroy();
          return;
        }
        answered++;
        const delay = Math.random() * options.maxDelayMs;
        queue = queue.then(() => new Promise((resolve) => setTimeout(resolve, delay)));
      }
      queue = queue.then(() => {
        if (client.destroyed) return;
        bytes += chunk.length;
        // Backpressure: a client that stops reading stops the server's bytes too, so the count is what it took.
        if (!client.write(chunk)) {
          upstream.pause();
          client.once('drain', () => upstream.resume());
        }
      });
    });
    const end = (): void => {
      void queue.then(() => {
        client.destroy();
        upstream.destroy();
        sockets.delete(client);
        sockets.delete(upstream);
      });
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  const port = await listen(server);
  return {
    endpoint: `http://127.0.0.1:${port}`,
    dropped: () => dropped,
    answered: () => answered,
    bytesToClients: () => bytes,
    setLossRate: (rate) => {
      lossRate = rate;
    },
    partitionAfterNext: (match, ms) => {
      armed = { match, ms };
    },
    close: () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

/** See the module comment. Requests are re-signed with `credentials` for `region`. */
export async function strippingProxy(
  target: string,
  credentials: { accessKeyId: string; secretAccessKey: string },
  region: string,
): Promise<Proxy> {
  const url = new URL(target);
  const signer = new SignatureV4({ credentials, region, service: 's3', sha256: NodeSha256, uriEscapePath: false, applyChecksum: true });
  const server = createHttpServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      void (async () => {
        const body = Buffer.concat(chunks);
        const requestUrl = new URL(req.url ?? '/', target);
        const headers: Record<string, string> = {};
        for (const [name, value] of Object.entries(req.headers as IncomingHttpHeaders)) {
          if (value === undefined) continue;
          if (['if-match', 'if-none-match', 'authorization', 'x-amz-date', 'host', 'connection'].includes(name)) continue;
          headers[name] = Array.isArray(value) ? value.join(',') : value;
        }
        headers.host = url.host;
        const query: Record<string, string> = {};
        requestUrl.searchParams.forEach((v, k) => (query[k] = v));
        const signed = await signer.sign({
          method: req.method ?? 'GET',
          protocol: 'http:',
          hostname: url.hostname,
          port: Number(url.port),
          path: requestUrl.pathname,
          query,
          headers,
          body,
        });
        const upstream = httpRequest(
          { host: url.hostname, port: url.port, method: req.method, path: req.url, headers: signed.headers },
          (answer) => {
            res.writeHead(answer.statusCode ?? 502, answer.headers);
            answer.pipe(res);
          },
        );
        upstream.on('error', () => res.destroy());
        upstream.end(body);
      })().catch(() => res.destroy());
    });
  });
  const port = await listen(server);
  return {
    endpoint: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
