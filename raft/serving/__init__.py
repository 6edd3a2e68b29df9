"""The parts of `raft serve` (raft.serve) that its routes and the web pages share: errors,
request checks, the Host and key guard, and a completion's work and reply."""
