"""Policy model, schema, loader and pure evaluation: data in, decisions out, no I/O."""
