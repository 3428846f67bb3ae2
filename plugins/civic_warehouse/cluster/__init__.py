"""A distributed (CeleryExecutor) Airflow deployment on one machine, and a client for its API.

``python -m civic_warehouse cluster start|status|run|stop``. ``deployment`` starts and stops the
components, ``broker`` finds or starts Redis, ``processes`` runs them as process groups, ``api``
speaks Airflow's REST API v2.
"""
