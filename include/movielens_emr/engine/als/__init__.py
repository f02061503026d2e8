"""The implicit-feedback ALS engine: the PySpark script of jobs/, its options, its evaluation split and its
results (docs/als.md)."""
