"""What a run leaves: results, metrics, the history, run and benchmark reports."""
