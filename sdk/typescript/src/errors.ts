// Typed errors from the google.rpc.Status details the server attaches to every failed call.
import { ConnectError } from "@connectrpc/connect";
import { BadRequestSchema, ErrorInfoSchema, RetryInfoSchema } from "./gen/google/rpc/error_details_pb.js";

export interface FieldViolation {
  field: string;
  description: string;
  reason: string;
}

/** A failed call (still a ConnectError: `code`, `rawMessage`, `metadata`, `details`) with its status
 * details decoded: the ErrorInfo `reason` (UPPER_SNAKE, domain `adplane`) and `metadata`, the
 * BadRequest `fieldViolations` of a validation error, and the RetryInfo delay. */
export class AdplaneError extends ConnectError {
  // `name` stays "ConnectError": Connect recognises its errors by name, and re-wraps anything else.
  readonly reason: string;
  readonly domain: string;
  readonly errorMetadata: Readonly<Record<string, string>>;
  readonly fieldViolations: readonly FieldViolation[];
  readonly retryDelayMs: number | undefined;

  constructor(error: ConnectError) {
    super(error.rawMessage, error.code, error.metadata, undefined, error.cause);
    this.details = error.details;
    this.isWireError = error.isWireError;
    const [info] = error.findDetails(ErrorInfoSchema);
    this.reason = info?.reason ?? "";
    this.domain = info?.domain ?? "";
    this.errorMetadata = info?.metadata ?? {};
    this.fieldViolations = error
      .findDetails(BadRequestSchema)
      .flatMap((bad) => bad.fieldViolations)
      .map((v) => ({ field: v.field, description: v.description, reason: v.reason }));
    const delay = error.findDetails(RetryInfoSchema)[0]?.retryDelay;
    this.retryDelayMs = delay === undefined ? undefined : Number(delay.seconds) * 1000 + delay.nanos / 1e6;
  }

  // ConnectError's own instanceof check accepts any ConnectError-shaped object; this one is exact.
  static override [Symbol.hasInstance](value: unknown): boolean {
    return Function.prototype[Symbol.hasInstance].call(AdplaneError, value);
  }

  /** `error` as an AdplaneError when it is a ConnectError; anything else unchanged. */
  static decode(error: unknown): unknown {
    if (error instanceof AdplaneError || !(error instanceof ConnectError)) {
      return error;
    }
    return new AdplaneError(error);
  }
}
