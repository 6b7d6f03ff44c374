"""grpc.aio server interceptors, each with one job. `server.app` installs them in order."""
