// Over TLS with a private CA, from Node: sign in and ask who you are, through Envoy's HTTPS port (gRPC,
// HTTP/2 by ALPN) or straight to a server that serves TLS itself, with a client certificate when it
// requires one (mTLS). In a project with @adplane/sdk and @connectrpc/connect-node installed, compiled
// to JavaScript, against `make run TLS=1` (its CA and a developer's client certificate are in .data/tls):
//   node tls.js https://localhost:8080 .data/tls/ca.pem
//   node tls.js https://localhost:50051 .data/tls/ca.pem admin@example.com adplane-dev-admin \
//     .data/tls/client.pem .data/tls/client-key.pem
// Browsers trust the CAs of the system: add the CA there. Node's fetch (the gRPC-Web transport of
// "@adplane/sdk/web") takes one more CA from NODE_EXTRA_CA_CERTS=.data/tls/ca.pem.
import { readFileSync } from "node:fs";
import { createNodeClient, signIn, type TlsOptions } from "@adplane/sdk/node";

const [
  baseUrl = "https://localhost:8080",
  caFile = ".data/tls/ca.pem",
  email = "admin@example.com",
  password = "adplane-dev-admin",
  certFile,
  keyFile,
] = process.argv.slice(2);
const tls: TlsOptions = { ca: readFileSync(caFile) };
if (certFile !== undefined && keyFile !== undefined) {
  tls.cert = readFileSync(certFile);
  tls.key = readFileSync(keyFile);
}
const api = createNodeClient(baseUrl, await signIn(baseUrl, email, password, tls), tls);
const me = await api.auth.getCurrentUser({});
console.log(`signed in over TLS as ${me.user?.email}`);
