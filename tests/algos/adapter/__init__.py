"""Algorithm packages the adapter tests run inside real worker processes."""
