"""Interviews from where they live: captions, interview pages, labelled or unlabelled text.

Every reader turns its source into `Turn`s (raft.interviews.turns); one rule pairs them
into exchanges, and `raft.transcripts.save_transcript` validates and writes the result.
"""
