// Credentials for every call: an access token renewed through RefreshToken before it expires, or an API key.
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { createClient, type Interceptor, type Transport } from "@connectrpc/connect";
import { AdplaneError } from "./errors.js";
import { AuthService, type TokenPair } from "./gen/adplane/v1/auth_service_pb.js";

/** Renew this long before the access token expires, so no call leaves with a stale one. */
export const REFRESH_AHEAD_MS = 30_000;

export interface Credentials {
  /** Headers to send with the next call. */
  headers(): Promise<Record<string, string>>;
}

/** An API key (ApiKeyService.CreateApiKey), sent as `x-api-key`. */
export class ApiKeyCredentials implements Credentials {
  constructor(private readonly apiKey: string) {}

  async headers(): Promise<Record<string, string>> {
    return { "x-api-key": this.apiKey };
  }
}

/** A signed-in user's tokens; `onRefresh` sees every new pair (to store the refresh token). */
export class TokenCredentials implements Credentials {
  private refreshing: Promise<TokenPair> | undefined;

  constructor(
    private current: TokenPair,
    private readonly transport: Transport,
    private readonly onRefresh?: (tokens: TokenPair) => void,
  ) {}

  /** Sign in with AuthService.Login over `transport` (one without credentials). */
  static async login(transport: Transport, email: string, password: string): Promise<TokenCredentials> {
    const reply = await createClient(AuthService, transport).login({ email, password });
    if (reply.tokens === undefined) {
      throw new Error("Login returned no tokens");
    }
    return new TokenCredentials(reply.tokens, transport);
  }

  get tokens(): TokenPair {
    return this.current;
  }

  async headers(): Promise<Record<string, string>> {
    const expires = this.current.accessTokenExpireTime;
    if (expires === undefined || timestampDate(expires).getTime() - REFRESH_AHEAD_MS <= Date.now()) {
      await this.refresh();
    }
    return { authorization: `Bearer ${this.current.accessToken}` };
  }

  /** One RefreshToken at a time: the refresh token works once, so concurrent calls share the renewal. */
  refresh(): Promise<TokenPair> {
    this.refreshing ??= createClient(AuthService, this.transport)
      .refreshToken({ refreshToken: this.current.refreshToken })
      .then((reply) => {
        if (reply.tokens === undefined) {
          throw new Error("RefreshToken returned no tokens");
        }
        this.current = reply.tokens;
        this.onRefresh?.(reply.tokens);
        return reply.tokens;
      })
      .finally(() => {
        this.refreshing = undefined;
      });
    return this.refreshing;
  }
}

/** Adds the credentials' headers to every request. */
export function credentialsInterceptor(credentials: Credentials): Interceptor {
  return (next) => async (request) => {
    for (const [name, value] of Object.entries(await credentials.headers())) {
      request.header.set(name, value);
    }
    return next(request);
  };
}

/** Turns failed calls into AdplaneError: unary calls, and server streams both when they open and
 * when they fail while being read (a watch's UNAVAILABLE, RESOURCE_EXHAUSTED, PERMISSION_DENIED...). */
export const errorInterceptor: Interceptor = (next) => async (request) => {
  try {
    const response = await next(request);
    return response.stream ? { ...response, message: decodeErrors(response.message) } : response;
  } catch (error) {
    throw AdplaneError.decode(error);
  }
};

async function* decodeErrors<T>(messages: AsyncIterable<T>): AsyncIterable<T> {
  try {
    yield* messages;
  } catch (error) {
    throw AdplaneError.decode(error);
  }
}
