"""The Airflow glue: the only rooms that import the Airflow SDK and the Amazon provider."""
