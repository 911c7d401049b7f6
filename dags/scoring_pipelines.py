"""Airflow DAGs: one batch-scoring DAG per pipeline spec with a ``scoring`` section.

Wiring only; the DAG shape is in trainyard.scoring.dag and the steps in trainyard.scoring.steps.
A malformed spec makes this file fail to import, naming the file and field.
"""

from trainyard.scoring.dag import build_scoring_dags

for _dag in build_scoring_dags():
    globals()[_dag.dag_id] = _dag
