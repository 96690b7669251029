"""Pure compilers: requests to MongoDB filters and aggregation pipelines."""
