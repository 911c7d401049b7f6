"""What the Airflow UI shows of trainyard: task links to their evidence and the Models page."""
