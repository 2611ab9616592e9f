"""Core data and names: trajectories in CSR form, diffusive states and model names, the input error base."""
