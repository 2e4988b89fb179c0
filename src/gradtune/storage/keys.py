"""The names under which gradtune stores what it stores in a study.

One module for them, so that whoever writes a key and whoever reads it (the
tuning loop and the report, the comparison and the report) import its name from
here rather than from each other.
"""

from __future__ import annotations

__all__ = ["METADATA_KEY", "AUTO_KEY", "COMPARE_KEY", "BASELINE_ATTR", "START_ATTR", "FAILED_STATUS"]

# Study user attributes.
METADATA_KEY = "gradtune"  # the settings that give a study's values their meaning (see storage.study)
AUTO_KEY = "gradtune_auto"  # --strategy auto: its range tests and narrowed space
COMPARE_KEY = "gradtune_compare"  # gradtune compare: its result.json

# Trial user attributes.
# Marks a trial the pruner lets run whole (``auto``'s portfolio at its defaults): its rung values are still
# recorded, so it sets the bar for the trials after it. Its value is the optimiser's name.
BASELINE_ATTR = "gradtune_baseline"
# Marks the first trials of ``auto``'s search: the best baseline's configuration at rates around its own. They
# run whole, as the baselines do (a higher rate often looks worse at the first rungs and ends better). Its value
# is the number of that baseline's trial.
START_ATTR = "gradtune_search_start"
# The status of a trial whose configuration was refused, or that an error ended: it would fail the same way
# again, so no resume queues it again (storage.study.requeue_failed).
FAILED_STATUS = "failed"
