"""Model backends, each chosen by a spec string: `local`, `gguf:PATH`, `openai:MODEL[@URL]`."""
