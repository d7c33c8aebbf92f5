//! Writing GGUF files: synthetic models for tests, benchmarks and tools.
