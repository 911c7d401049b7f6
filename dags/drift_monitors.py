"""Airflow DAGs: one drift monitor per pipeline spec with a partitioned source.

Wiring only; the DAG shape is in trainyard.drift.dag and the steps in trainyard.drift.steps.
A malformed spec makes this file fail to import, naming the file and field.
"""

from trainyard.drift.dag import build_drift_dags

for _dag in build_drift_dags():
    globals()[_dag.dag_id] = _dag
