# The project's Airflow image: the official one plus this project's pinned runtime requirements
# (requirements.txt, which includes the Celery provider; no test or lint tools, no simulator). DAGs,
# plugins, sources, the dbt project and the suites are mounted by docker-compose.yml, so the image
# only changes when requirements.txt does.
FROM apache/airflow:3.3.2-python3.11

# build/ holds the dbt manifest the transform DAG is rendered from and the docs site; compose
# mounts a named volume there, which takes this directory's owner (the airflow user).
USER root
RUN mkdir -p /opt/airflow/build && chown airflow:0 /opt/airflow/build
USER airflow

COPY requirements.txt /requirements.txt
RUN pip install --no-cache-dir -r /requirements.txt
ENV PYTHONPATH=/opt/airflow/plugins
