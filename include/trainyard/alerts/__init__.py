"""Alerts: failed tasks, gate rejections, drift and decay verdicts, approvals waiting, rollbacks.

``messages`` writes what an event says (pure), ``delivery`` sends it once per channel (SMTP,
a Slack-compatible webhook, a JSON webhook; none configured: the log) and never fails the
pipeline, ``notifiers`` are the Airflow callbacks. Cheap to import: the DAG builders import the
notifiers at parse time.
"""
