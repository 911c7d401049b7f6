"""Local tooling of trainyard: the embedded stack, the production shape without Docker, the demo,
the Airflow REST client and the synthetic churn data. Not part of the runtime package or image.
"""
