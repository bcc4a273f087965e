"""Infrastructure at the bottom of the stack: backends, the history store, keys, embedding, config, paths, errors."""
