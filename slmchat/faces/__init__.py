"""The faces: they render the engine's events and pass on what the user wants; nothing else."""
