"""Change points and segments: a ruptures-style window detector on the networks' per-frame
outputs, then per-segment alpha, K and state (refined by MSD fits)."""
