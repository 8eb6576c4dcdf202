"""`mlflow-infra bench`: ingest, read isolation, search at scale, the raw insert ceiling, and the
calibration of the planner's per-request server CPU figures, measured on this machine.

Pure pieces (statistics, tables, SQL generation) live in `stats`, `report` and `scale`; the rest
starts real servers on 127.0.0.1 and stops them when done.
"""
