"""Studies: long experiments run as scripts (`scripts/study`), never as tests."""
