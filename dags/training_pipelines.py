"""Airflow DAGs: one nightly training DAG per pipeline spec in include/pipelines/.

Wiring only; the DAG shape is in trainyard.dag_factory and the logic in the trainyard package.
A malformed spec makes this file fail to import, naming the file and field.
"""

from trainyard.dag_factory import build_training_dags

for _dag in build_training_dags():
    globals()[_dag.dag_id] = _dag
