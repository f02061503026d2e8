"""The Airflow UI's "MovieLens benchmarks" page: the run history, the latest benchmark report, a plan."""
