# The image of docker-compose.yaml: the official Airflow image of the pinned version with this project's
# pinned requirements. Python 3.11: the job's mrjob 0.7.4 needs Python <= 3.11.
# dags/, plugins/, include/ and jobs/ are mounted by docker-compose.yaml, not copied.
FROM apache/airflow:3.3.2-python3.11

# The als engine runs Spark (pyspark 3.5.5, EMR 7's) in local mode on the worker, and Spark needs a Java
# runtime: Java 17 as on EMR 7, Debian's headless one (the image is Debian bookworm). apt needs root; the
# image runs as airflow again after it. JAVA_HOME is a link that does not depend on the architecture.
# (man1 is missing in a slim image, and openjdk's installer writes a manual page's link there.)
USER root
RUN mkdir -p /usr/share/man/man1 \
    && apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless \
    && ln -s "/usr/lib/jvm/java-17-openjdk-$(dpkg --print-architecture)" /usr/lib/jvm/java-17 \
    && apt-get autoremove -yqq --purge \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/*
ENV JAVA_HOME=/usr/lib/jvm/java-17
USER airflow

COPY --chown=airflow:0 requirements.txt constraints.txt /opt/airflow/requirements/
RUN pip install --no-cache-dir \
        -r /opt/airflow/requirements/requirements.txt -c /opt/airflow/requirements/constraints.txt

ENV PYTHONPATH=/opt/airflow/include
