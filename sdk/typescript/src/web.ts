// Browsers: gRPC-Web through Envoy (port 8080 under `make run`).
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import type { Transport } from "@connectrpc/connect";
import { type AdplaneClient, adplaneInterceptors, createAdplaneClient } from "./client.js";
import { type Credentials, TokenCredentials } from "./credentials.js";

export function webTransport(baseUrl: string, credentials?: Credentials): Transport {
  return createGrpcWebTransport({ baseUrl, interceptors: adplaneInterceptors(credentials) });
}

/** A client for `baseUrl` (the Envoy edge, e.g. `http://localhost:8080`). */
export function createWebClient(baseUrl: string, credentials?: Credentials): AdplaneClient {
  return createAdplaneClient(webTransport(baseUrl, credentials));
}

/** Signs in with email and password; the tokens refresh themselves. */
export async function signIn(baseUrl: string, email: string, password: string): Promise<TokenCredentials> {
  return TokenCredentials.login(webTransport(baseUrl), email, password);
}
