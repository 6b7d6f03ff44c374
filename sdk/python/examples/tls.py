"""Over TLS with a private CA: sign in and ask who you are, through Envoy's HTTPS port (gRPC by ALPN)
or straight to a server that serves TLS itself, with a client certificate when it requires one (mTLS).

Against `make run TLS=1` (its CA and a developer's client certificate are under .data/tls):
    python tls.py localhost:8080 .data/tls/ca.pem
    python tls.py localhost:50051 .data/tls/ca.pem --cert .data/tls/client.pem --key .data/tls/client-key.pem
Options: --email, --password (default: the development superuser).
"""

import argparse
from pathlib import Path

from adplane.v1 import auth_service_pb2
from adplane.v1.auth_service_pb2_grpc import AuthServiceStub
from adplane_client import TokenCredentials, channel_credentials, connect

parser = argparse.ArgumentParser()
parser.add_argument("target", help="host:port, the name the server's certificate carries (localhost)")
parser.add_argument("ca", type=Path, help="PEM file of the CA that signed the server's certificate")
parser.add_argument("--cert", type=Path, help="client certificate (PEM), for a server that requires one")
parser.add_argument("--key", type=Path, help="its private key (PEM)")
parser.add_argument("--email", default="admin@example.com")
parser.add_argument("--password", default="adplane-dev-admin")
args = parser.parse_args()

tls = channel_credentials(
    tls=True,
    root_certificates=args.ca.read_bytes(),
    certificate_chain=args.cert.read_bytes() if args.cert else None,
    private_key=args.key.read_bytes() if args.key else None,
)
credentials = TokenCredentials.login(args.target, args.email, args.password, channel_credentials=tls)
with connect(args.target, credentials, channel_credentials=tls) as channel:
    reply = AuthServiceStub(channel).GetCurrentUser(auth_service_pb2.GetCurrentUserRequest())
    print(f"signed in over TLS as {reply.user.email}")
