"""Agent side: the gRPC server and the drivers it loads by name."""
