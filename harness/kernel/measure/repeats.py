"""Repeated sessions of one job: between-session against within-session
variation. A large between-session share means single sessions mislead
(warm caches, frequency scaling, background load differ per session)."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def analyse(sessions: Sequence[Sequence[float]]) -> dict:
    ses = [np.asarray(s, dtype=np.float64) for s in sessions if len(s)]
    if len(ses) < 2:
        return {"sessions": len(ses)}
    medians = np.array([np.median(s) for s in ses])
    within = np.array([s.std(ddof=1) if s.size > 1 else 0.0 for s in ses])
    grand = float(np.median(np.concatenate(ses)))
    between_std = float(medians.std(ddof=1))
    within_std = float(np.sqrt(np.mean(within ** 2)))
    return {
        "sessions": len(ses),
        "session_p50_ms": [float(m) for m in medians],
        "between_session_std_ms": between_std,
        "between_session_cv": between_std / grand if grand > 0 else None,
        "within_session_std_ms": within_std,
        # Share of the total variance that comes from session to session.
        "between_share": between_std ** 2 / (between_std ** 2 + within_std ** 2)
        if (between_std or within_std) else 0.0,
    }
