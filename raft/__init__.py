"""raft: build a conversational replica of a writer, and measure it."""

__version__ = "0.1.0"
