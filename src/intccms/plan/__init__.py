"""Planning: datasets -> files -> metadata (events, sums of weights) -> work items (chunks)."""
