"""What every feature shares: settings, specs, metrics, errors, S3, MLflow tracking, lineage.

Every module here is cheap to import (the DAG files import the spec and settings at parse time);
boto3, MLflow and scikit-learn are imported inside the functions that use them.
"""
