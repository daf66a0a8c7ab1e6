"""Settings for the whole suite.

Hypothesis's per-example deadline (200 ms by default) measures wall time, and
this suite runs on a shared 2-core machine, under coverage and beside servers
in other processes: a property that holds can then fail as "too slow". What
the properties assert is correctness, never speed (speed is measured in
bench/), so the deadline is off.
"""

from hypothesis import settings

settings.register_profile("mailwire", deadline=None)
settings.load_profile("mailwire")
