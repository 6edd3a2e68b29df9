"""`scripts/bench`: each stage of the pipeline measured against its raw limit in the same run.

One module per stage; each `run(quick)` returns `Result` rows. Speed lives here, never in
timed tests. Synthetic corpora are generated with a fixed seed, so runs compare.
"""
