"""Airflow DAGs: one nightly training DAG per pipeline spec in include/pipelines/.

Wiring only; the DAG shape is in trainyard.training.dag and the steps in trainyard.training.steps.
A malformed spec makes this file fail to import, naming the file and field.
"""

from trainyard.training.dag import build_training_dags

for _dag in build_training_dags():
    globals()[_dag.dag_id] = _dag
