"""One concept-drift verdict from ADWIN, DDM and the drift statistics, without adding their false alarms.

Alerting on each detector independently adds their false alarms: on a stationary error stream the pages are
the *union* of ADWIN's and DDM's false alarms. The verdict instead gives each source one role, per error stream
(one model version, or one slice of it), with time counted in joined outcomes:

- **ADWIN on the 0/1 error stream triggers.** A detection where the kept (recent) part of ADWIN's window has a
  *higher* error rate than the part it dropped opens the incident at ``warning`` (one page). ADWIN is the trigger
  because it false-alarms least on stationary error streams and reacts fastest (``bench.detection_bench``).
- **A second, independent source confirms** and escalates to ``critical`` (what a rollback acts on): DDM detecting
  within ``confirm_within`` outcomes of an ADWIN increase, in either order, or a data / prediction drift incident
  (PSI, KS, JS, mean shift, ADWIN on scores or features) open on the same version and slice.
- **DDM alone never pages**: its detection is remembered for ``confirm_within`` outcomes, and counted as an update
  while an incident is open.
- **A falling error rate is no incident**: ADWIN detecting a decrease is not a detection (the learner improving,
  or the change ending); while an incident is open it lets the band check resolve it
  (:meth:`monitor.incidents.IncidentBook.quiet`).

So a page needs ADWIN to false-alarm, and a critical verdict needs two sources to false-alarm within
``confirm_within`` outcomes of each other: far rarer than either alone (the bench's combination table shows it).

Example:
    >>> v = ConceptVerdict(confirm_within=100)
    >>> v.on_detection("k", "ddm", "up", position=1000, drift_open=False, is_open=False) is None  # pending only
    True
    >>> v.on_detection("k", "adwin", "up", position=1050, drift_open=False, is_open=False)     # confirmed by DDM
    'critical'
    >>> v.on_detection("k", "adwin", "up", position=5000, drift_open=False, is_open=False)
    'warning'
    >>> v.on_detection("k", "adwin", "down", position=5100, drift_open=False, is_open=True) is None
    True
"""

from __future__ import annotations

from monitor.exceptions import MonitorConfigError
from monitor.incidents import Severity


class ConceptVerdict:
    """The severity a detection on an error stream reports (None: not a detection to report)."""

    def __init__(self, confirm_within: int = 2_000) -> None:
        if confirm_within < 0:
            raise MonitorConfigError(f"confirm_within must be >= 0 outcomes, got {confirm_within}")
        self.confirm_within = confirm_within
        self._adwin_up: dict[str, int] = {}  # key -> position of the latest ADWIN increase
        self._ddm: dict[str, int] = {}       # key -> position of the latest DDM detection
        self.pending_ddm = 0                 # DDM detections that paged nothing (no ADWIN increase near them)

    def _near(self, seen: dict[str, int], key: str, position: int) -> bool:
        at = seen.get(key)
        return at is not None and 0 <= position - at <= self.confirm_within

    def on_detection(self, key: str, detector: str, direction: str, position: int, *, drift_open: bool,
                     is_open: bool) -> Severity | None:
        """The severity to report for ``detector``'s detection at outcome ``position`` of ``key``'s error stream.

        ``drift_open``: a data or prediction drift incident is open on the same version and slice; ``is_open``:
        the concept-drift incident of ``key`` is open."""
        if detector == "ddm":
            confirmed = self._near(self._adwin_up, key, position)
            self._ddm[key] = position
            if confirmed:
                return "critical"
            if is_open:
                return "warning"  # counted as an update; never de-escalates an open incident
            self.pending_ddm += 1
            return None
        if direction != "up":
            return None
        self._adwin_up[key] = position
        return "critical" if drift_open or self._near(self._ddm, key, position) else "warning"

    def forget(self, key: str) -> None:
        """Drop what is remembered of ``key``."""
        self._adwin_up.pop(key, None)
        self._ddm.pop(key, None)
