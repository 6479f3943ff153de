"""Who ran a run, and where: user, host, git commit and CI job URL.

Read from the environment a controller runs in (injectable, so tests pass
their own). CI services announce themselves through variables they document:

* GitHub Actions ("Variables reference", default environment variables):
  GITHUB_SHA; the run's page is GITHUB_SERVER_URL/GITHUB_REPOSITORY/actions/runs/GITHUB_RUN_ID.
* GitLab CI ("Predefined CI/CD variables reference"): CI_JOB_URL (GitLab 11.1+), CI_COMMIT_SHA.
* Jenkins (pipeline-syntax/globals): BUILD_URL; GIT_COMMIT from the Git plugin.
* Buildkite: BUILDKITE_BUILD_URL (+ "#" BUILDKITE_JOB_ID), BUILDKITE_COMMIT.
* CircleCI: CIRCLE_BUILD_URL, CIRCLE_SHA1.

HARNESS_USER / HARNESS_CI_JOB_URL / HARNESS_GIT_COMMIT override what is found
(a service not listed here, or a shared service account). Outside CI the
commit is that of the working directory's git checkout, when there is one.
What cannot be found is None, never a guess.
"""

from __future__ import annotations

import getpass
import os
import socket
import subprocess
from typing import Mapping, Optional

GIT_TIMEOUT_S = 5.0  # `git rev-parse HEAD` is instant; a hung filesystem must not hold a run


def ci_job_url(env: Mapping[str, str]) -> Optional[str]:
    if env.get("HARNESS_CI_JOB_URL"):
        return env["HARNESS_CI_JOB_URL"]
    if env.get("CI_JOB_URL"):
        return env["CI_JOB_URL"]
    if env.get("GITHUB_RUN_ID") and env.get("GITHUB_REPOSITORY"):
        server = env.get("GITHUB_SERVER_URL") or "https://github.com"
        return f"{server}/{env['GITHUB_REPOSITORY']}/actions/runs/{env['GITHUB_RUN_ID']}"
    if env.get("BUILDKITE_BUILD_URL"):
        job = env.get("BUILDKITE_JOB_ID")
        return env["BUILDKITE_BUILD_URL"] + (f"#{job}" if job else "")
    for name in ("CIRCLE_BUILD_URL", "BUILD_URL"):
        if env.get(name):
            return env[name]
    return None


def git_commit(env: Mapping[str, str], cwd: Optional[str] = None) -> Optional[str]:
    for name in ("HARNESS_GIT_COMMIT", "GITHUB_SHA", "CI_COMMIT_SHA", "BUILDKITE_COMMIT", "CIRCLE_SHA1", "GIT_COMMIT"):
        if env.get(name):
            return env[name]
    try:
        p = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                           timeout=GIT_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):
        return None
    out = p.stdout.strip()
    return out if p.returncode == 0 and len(out) in (40, 64) else None


def user(env: Mapping[str, str]) -> Optional[str]:
    if env.get("HARNESS_USER"):
        return env["HARNESS_USER"]
    if env.get("GITLAB_USER_LOGIN"):
        return env["GITLAB_USER_LOGIN"]
    if env.get("GITHUB_ACTOR"):
        return env["GITHUB_ACTOR"]
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no LOGNAME/USER (some containers)
        return None


def provenance(env: Optional[Mapping[str, str]] = None, cwd: Optional[str] = None) -> dict:
    env = os.environ if env is None else env
    return {"user_name": user(env), "host_name": socket.gethostname() or None, "pid": os.getpid(),
            "git_commit": git_commit(env, cwd), "ci_job_url": ci_job_url(env)}
