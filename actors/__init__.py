"""actors: an async actor runtime on trio (placeholder while the runtime is written)."""
