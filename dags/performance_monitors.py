"""Airflow DAGs: one performance monitor per pipeline spec with a ``performance`` section.

Wiring only; the DAG shape is in trainyard.monitoring.dag and the steps in
trainyard.monitoring.steps. A malformed spec makes this file fail to import, naming the file and
field.
"""

# Named so the dag-processor imports them once in its parent, not in every forked parse
# (see dags/drift_monitors.py).
import airflow.providers.standard.decorators.short_circuit  # noqa: F401
import airflow.providers.standard.operators.trigger_dagrun  # noqa: F401

from trainyard.monitoring.dag import build_performance_dags

for _dag in build_performance_dags():
    globals()[_dag.dag_id] = _dag
