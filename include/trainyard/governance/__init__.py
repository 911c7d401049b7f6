"""People in control of the registry: the audit trail of alias moves, rollback, approval.

Every module here is cheap to import (the DAG builders import it at parse time); MLflow and
boto3 are imported inside the functions that use them.
"""
