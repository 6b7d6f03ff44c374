// Node: gRPC over HTTP/2 straight to the server (port 50051 under `make run`).
import { createGrpcTransport } from "@connectrpc/connect-node";
import type { Transport } from "@connectrpc/connect";
import { type AdplaneClient, adplaneInterceptors, createAdplaneClient } from "./client.js";
import { type Credentials, TokenCredentials } from "./credentials.js";

export function nodeTransport(baseUrl: string, credentials?: Credentials): Transport {
  return createGrpcTransport({ baseUrl, interceptors: adplaneInterceptors(credentials) });
}

/** A client for `baseUrl` (the gRPC server, e.g. `http://localhost:50051`). */
export function createNodeClient(baseUrl: string, credentials?: Credentials): AdplaneClient {
  return createAdplaneClient(nodeTransport(baseUrl, credentials));
}

/** Signs in with email and password; the tokens refresh themselves. */
export async function signIn(baseUrl: string, email: string, password: string): Promise<TokenCredentials> {
  return TokenCredentials.login(nodeTransport(baseUrl), email, password);
}
