"""Airflow DAGs: one nightly training DAG per pipeline spec in include/pipelines/.

Wiring only; the DAG shape is in trainyard.training.dag and the steps in trainyard.training.steps.
A malformed spec makes this file fail to import, naming the file and field.
"""

# The dag-processor imports the Airflow modules a DAG file names once, in its parent process
# ([dag_processor] parsing_pre_import_modules), instead of in every forked parse. Naming the ones
# our DAGs build on saves ~0.1-0.2 s per parse (benchmarks/parse_time.py).
import airflow.providers.standard.decorators.short_circuit  # noqa: F401
import airflow.providers.standard.operators.hitl  # noqa: F401
import airflow.providers.standard.operators.trigger_dagrun  # noqa: F401
import airflow.providers.standard.sensors.external_task  # noqa: F401

from trainyard.training.dag import build_training_dags

for _dag in build_training_dags():
    globals()[_dag.dag_id] = _dag
