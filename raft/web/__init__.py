"""Web pages served by `raft serve` beside its API (raft.web.app)."""
