"""Hypothesis profiles: ``ci`` (chosen when the environment variable CI is set) and ``dev`` (more examples).

``ci``: random (not derandomized) examples on every run, no example database, so a stale ``.hypothesis/`` folder
cannot replay old failures or hide new ones; no deadline (the machines are shared); a failure prints the blob to
reproduce it (``@reproduce_failure``). ``dev`` (``--hypothesis-profile=dev`` or ``HYPOTHESIS_PROFILE=dev``): five
times hypothesis' default number of examples for tests that do not set their own ``max_examples``.
Tests must pass under any ``--hypothesis-seed``.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=False, database=None, deadline=None, print_blob=True)
settings.register_profile("dev", max_examples=500, deadline=None)

if os.environ.get("HYPOTHESIS_PROFILE"):
    settings.load_profile(os.environ["HYPOTHESIS_PROFILE"])
elif os.environ.get("CI"):
    settings.load_profile("ci")
