"""Apache Airflow provider plugin for workflow-bridge (stable REST API v1): ``provider`` is what the
bridge loads, ``sandbox`` the emulation its tests and ``bridge sandbox --plugin airflow`` serve."""
