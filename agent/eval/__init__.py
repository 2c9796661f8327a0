"""`callcenter eval`: whole simulated calls judged against the expectations their scenarios state.

- `expectations.py`: the checks, pure functions over a call's own report files.
- `run.py`: runs a suite of scenarios as simulated calls (a concurrency limit, a progress bar).
- `report.py`: the table, the summary line and `eval.json`.
"""
