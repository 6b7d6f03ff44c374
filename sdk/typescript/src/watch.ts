// Watch streams that outlive a connection: resume from the last resume_token after a drop.
import { type CallOptions, Code, ConnectError } from "@connectrpc/connect";
import { AdplaneError } from "./errors.js";

/** A server-streaming method of an adplane client (e.g. `api.requests.watchWorkspaceRequests`). */
export type WatchMethod<Req, Res> = (request: Req, options?: CallOptions) => AsyncIterable<Res>;

/** What `watch` yields: the server's next message, or `reload`: forget what the stream delivered so
 * far, a new snapshot follows (the resume token expired, or the stream broke inside its snapshot). */
export type WatchEvent<Res> = { kind: "message"; message: Res } | { kind: "reload"; cause: AdplaneError };

export interface WatchOptions {
  /** Ends the watch (the loop then throws Connect's Canceled error, as a call does). */
  signal?: AbortSignal;
  /** The first wait before reconnecting; each further attempt doubles it, up to `maxDelayMs`. */
  initialDelayMs?: number;
  maxDelayMs?: number;
  /** Told of every reconnection: the error that ended the stream and the wait before the next try. */
  onRetry?: (error: AdplaneError, attempt: number, delayMs: number) => void;
}

export const RESUME_TOKEN_EXPIRED = "RESUME_TOKEN_EXPIRED";

/** Errors after which the stream is opened again: the server went away or shut down (UNAVAILABLE),
 * the client read too slowly (RESOURCE_EXHAUSTED), or the connection broke without a status. */
export function isResumable(error: AdplaneError): boolean {
  return [Code.Unavailable, Code.ResourceExhausted].includes(error.code) || brokeWithoutStatus(error);
}

function brokeWithoutStatus(error: AdplaneError): boolean {
  // A connection or HTTP/2 stream cut mid-stream comes without the ErrorInfo adplane puts on every
  // error it sends: INTERNAL or UNKNOWN (fetch failing, Envoy resetting the stream of a process that
  // died), or CANCELED (Node's HTTP/2 closing the streams of a dropped connection; `watch` checks
  // its own AbortSignal first).
  return [Code.Unknown, Code.Internal, Code.Canceled].includes(error.code) && error.reason === "";
}

/** "Full jitter": a random wait between 0 and the exponential ceiling, so clients cut off together
 * do not come back together. */
export function backoffDelay(attempt: number, initialDelayMs: number, maxDelayMs: number, random = Math.random): number {
  return random() * Math.min(maxDelayMs, initialDelayMs * 2 ** attempt);
}

/**
 * Every message of a watch, across reconnections: after a resumable error the method is called
 * again with the last `resumeToken` received (after a back-off with jitter, at least the server's
 * RetryInfo delay), so no change is missed or repeated. Any other error ends the loop.
 *
 *   for await (const event of watch(api.requests.watchWorkspaceRequests, { workspaceId })) {
 *     if (event.kind === "reload") { requests.clear(); continue; }
 *     ...event.message
 *   }
 */
export async function* watch<Req extends { resumeToken?: string }, Res extends { resumeToken: string }>(
  method: WatchMethod<Req, Res>,
  request: Req,
  options: WatchOptions = {},
): AsyncGenerator<WatchEvent<Res>, void, undefined> {
  const { signal, initialDelayMs = 250, maxDelayMs = 15_000, onRetry } = options;
  let token = request.resumeToken ?? "";
  // Whether the caller holds state from this stream that a new snapshot must replace.
  let delivered = token !== "";
  let attempt = 0;
  for (;;) {
    let ended: AdplaneError;
    try {
      for await (const message of method({ ...request, resumeToken: token }, { signal })) {
        if (message.resumeToken) token = message.resumeToken; // snapshot parts but the last have none
        delivered = true;
        attempt = 0;
        yield { kind: "message", message };
      }
      // Watches do not end by themselves: a stream that closed cleanly is resumed like a drop.
      ended = new AdplaneError(new ConnectError("the watch ended without a status", Code.Unavailable));
    } catch (error) {
      const decoded = AdplaneError.decode(error);
      if (!(decoded instanceof AdplaneError) || signal?.aborted) throw decoded;
      if (decoded.reason === RESUME_TOKEN_EXPIRED) {
        token = "";
        if (delivered) yield { kind: "reload", cause: decoded };
        delivered = false;
        continue;
      }
      if (!isResumable(decoded)) throw decoded;
      ended = decoded;
    }
    if (token === "" && delivered) {
      // Cut off inside the snapshot: it starts over.
      yield { kind: "reload", cause: ended };
      delivered = false;
    }
    const delayMs = Math.max(backoffDelay(attempt, initialDelayMs, maxDelayMs), ended.retryDelayMs ?? 0);
    attempt += 1;
    onRetry?.(ended, attempt, delayMs);
    await sleep(delayMs, signal);
  }
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const canceled = () => AdplaneError.decode(ConnectError.from(signal?.reason, Code.Canceled));
    if (signal?.aborted) {
      reject(canceled());
      return;
    }
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", abort);
      resolve();
    }, ms);
    const abort = () => {
      clearTimeout(timer);
      reject(canceled());
    };
    signal?.addEventListener("abort", abort, { once: true });
  });
}
