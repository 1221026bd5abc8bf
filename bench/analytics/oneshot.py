"""The benches' baseline: one Arrow ``INSERT … ON CONFLICT`` of a whole batch at once.

``INSERT_EXCEPTIONS_UNIQUE`` is the sink's exceptions insert without its in-batch
de-duplication (every event_id of the bench's batch is distinct), generated from the
same table spec as the sink's statements (``analytics/tables.py``). It reads the batch
table registered as ``_b_exceptions`` (``analytics.batch.exceptions_table``).
"""

from __future__ import annotations

from analytics.tables import EXCEPTIONS
from analytics.tablespec import insert_sql

INSERT_EXCEPTIONS_UNIQUE = insert_sql(EXCEPTIONS, deduplicate=False, on_conflict=True)
