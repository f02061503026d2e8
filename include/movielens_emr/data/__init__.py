"""The MovieLens datasets, the storage they live in, and their staging."""
