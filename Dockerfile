# The image of docker-compose.yaml: the official Airflow image of the pinned version with this project's
# pinned requirements. Python 3.11: the job's mrjob 0.7.4 needs Python <= 3.11.
# dags/, plugins/, include/ and jobs/ are mounted by docker-compose.yaml, not copied.
FROM apache/airflow:3.3.2-python3.11

COPY --chown=airflow:0 requirements.txt constraints.txt /opt/airflow/requirements/
RUN pip install --no-cache-dir \
        -r /opt/airflow/requirements/requirements.txt -c /opt/airflow/requirements/constraints.txt

ENV PYTHONPATH=/opt/airflow/include
