"""Base models: resolve and load a hub id, a folder or a builtin base; the chat format (rendering and
assistant masks); `molt doctor`'s environment checks."""
