"""The MongoEngine model and the store: the only code that touches MongoDB."""
