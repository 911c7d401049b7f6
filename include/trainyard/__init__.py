"""trainyard: scheduled, validated, gated and registered ML training pipelines.

Small typed steps runnable without Airflow (see :mod:`trainyard.cli`); the Airflow DAGs in
dags/ are generated from the YAML specs in include/pipelines/ by :mod:`trainyard.dag_factory`.
Keep this module free of imports: DAG files import the package at parse time.
"""
