"""The `raft` commands, a module per stage; raft/cli.py gathers them into one group."""
