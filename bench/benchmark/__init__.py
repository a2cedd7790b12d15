"""`make bench`: the speed targets, measured as ratios of interleaved runs (results/bench/bench.json)."""
