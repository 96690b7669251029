"""spaceone-job: the cost-analysis Job API as a gRPC service."""
