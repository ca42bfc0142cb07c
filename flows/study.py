"""Stage: the lever study. Run: `imgclf study --dataset mnist --model cnn --levers dropout`."""
from __future__ import annotations

from prefect import flow, task

from flows.config import StudyConfig, TrainConfig
from flows.plots import lever_panels
from flows.store import join, normalize, read_json, write_bytes, write_json
from flows.study_runs import run_points, study_key
from lightning_modules import metrics as M


def point_accuracy(cfg: TrainConfig) -> float:
    """Train (cached by inputs) and evaluate (cached in metrics.json) one configuration."""
    from cluster.launcher import train
    from flows.evaluate import evaluate_bundle

    out = train(cfg)
    m = read_json(join(out.bundle_uri, "metrics.json")) or evaluate_bundle(out.bundle_uri)
    return float(m[M.TEST_ACC])


def run_study(cfg: StudyConfig) -> str:
    """Sweep every lever; write study.json and study.png; returns the study's URI."""
    results = run_points(cfg, point_accuracy)
    uri = join(normalize(cfg.base.store), "study", cfg.base.dataset, cfg.base.model.family,
               study_key(cfg))
    title = f"{cfg.base.dataset} / {cfg.base.model.family}: one lever at a time " \
            f"({cfg.seeds} seed(s), {cfg.base.epochs} epoch(s))"
    write_bytes(join(uri, "study.png"), lever_panels(results, title))
    write_json(join(uri, "study.json"), {"config": cfg.model_dump(mode="json"),
                                         "results": results})
    return uri


@task(retries=1, retry_delay_seconds=10)
def study_task(cfg: StudyConfig) -> str:
    """Run the sweep (finished points are cached); returns the study's URI."""
    return run_study(cfg)


@flow(name="study")
def study(cfg: StudyConfig = StudyConfig()) -> str:
    """The original study's one-lever-at-a-time sweeps, with plots; returns the study's URI."""
    return study_task(cfg)


if __name__ == "__main__":
    print(study(StudyConfig()))
