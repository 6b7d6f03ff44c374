// Node: gRPC over HTTP/2, straight to the server (port 50051 under `make run`) or through Envoy's port.
import { createGrpcTransport } from "@connectrpc/connect-node";
import type { Transport } from "@connectrpc/connect";
import { type AdplaneClient, adplaneInterceptors, createAdplaneClient } from "./client.js";
import { type Credentials, TokenCredentials } from "./credentials.js";

/** TLS of an `https://` base URL, PEM. `ca`: the CAs to trust instead of Node's own (a private CA,
 * the one `make run TLS=1` makes in .data/tls/ca.pem); `cert` and `key`: a client certificate, for a
 * server that requires one (mTLS). */
export interface TlsOptions {
  ca?: string | Uint8Array;
  cert?: string | Uint8Array;
  key?: string | Uint8Array;
}

// Node's http2.connect() options (typed without Node's types, which the package's own code leaves out):
// its TLS takes any Uint8Array (a Buffer is one) where the types say Buffer.
type NodeOptions = Parameters<typeof createGrpcTransport>[0]["nodeOptions"];

export function nodeTransport(baseUrl: string, credentials?: Credentials, tls?: TlsOptions): Transport {
  return createGrpcTransport({ baseUrl, interceptors: adplaneInterceptors(credentials), nodeOptions: tls as NodeOptions });
}

/** A client for `baseUrl` (the gRPC server, e.g. `http://localhost:50051`, or with TLS
 * `https://localhost:8080` through Envoy). */
export function createNodeClient(baseUrl: string, credentials?: Credentials, tls?: TlsOptions): AdplaneClient {
  return createAdplaneClient(nodeTransport(baseUrl, credentials, tls));
}

/** Signs in with email and password; the tokens refresh themselves. */
export async function signIn(
  baseUrl: string,
  email: string,
  password: string,
  tls?: TlsOptions,
): Promise<TokenCredentials> {
  return TokenCredentials.login(nodeTransport(baseUrl, undefined, tls), email, password);
}
