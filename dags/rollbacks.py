"""Airflow DAGs: one manual rollback DAG per pipeline spec (``rollback_<name>``).

Wiring only; the DAG shape is in trainyard.governance.dag and the step in
trainyard.governance.rollback. A malformed spec makes this file fail to import, naming the file
and field.
"""

from trainyard.governance.dag import build_rollback_dags

for _dag in build_rollback_dags():
    globals()[_dag.dag_id] = _dag
