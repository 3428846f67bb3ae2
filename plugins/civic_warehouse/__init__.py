"""civic-warehouse: extract city systems, load a raw layer, transform with dbt, gate with GX, publish.

Airflow puts ``plugins/`` on ``sys.path``, so DAGs import this package by name; the CLI
(``python -m civic_warehouse``) uses the same code outside Airflow.
"""

__version__ = "0.1.0"
