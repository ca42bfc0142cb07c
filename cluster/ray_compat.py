"""Where this project leans on Ray internals, in one place: each use says what it works around,
so an upgrade that moves one breaks here, loudly, not somewhere in a stage."""
from __future__ import annotations

SECRET_PREFIXES = ("AWS_",)


def keep_secrets_out_of_runtime_envs() -> None:
    """Tune copies the driver's AWS_* variables into every trial actor's runtime environment
    (ray/tune/execution/class_cache.py), which Ray's runtime-env agent writes into its log
    under /tmp/ray in plain text. Trials need no such copy: a worker process inherits the
    environment of the Ray node it runs on (a local Ray, the driver's; a `ray start` node, the
    shell's or the instance's credentials), as Ray Train's workers and Ray tasks already do."""
    from ray.tune.execution import class_cache

    class_cache.ENV_VARS_TO_PROPAGATE = {
        v for v in class_cache.ENV_VARS_TO_PROPAGATE if not v.startswith(SECRET_PREFIXES)}
