"""What a run is asked to do and where it runs: params, deployment settings, capacity."""
