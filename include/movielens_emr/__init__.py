"""MovieLens similarity pipeline on AWS EMR: staging, cluster specs, steps, results and metrics."""
