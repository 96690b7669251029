"""The gRPC face of the service: the servicer and the renderer."""
