"""What every trainyard DAG shares: start date, retries, common Params, run context, failures.

Imported at DAG parse time: only the Airflow SDK and trainyard's light core modules.
"""
