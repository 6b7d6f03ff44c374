"""The REST/JSON and gRPC-Web edge: Envoy in front of the gRPC server."""
