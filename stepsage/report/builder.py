"""`build_report`: one execution's report as a self-contained HTML file, with every plot also as a PNG."""

from __future__ import annotations

import datetime
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stepsage.report import page
from stepsage.report.clients import ClientFactory, aws_clients
from stepsage.report.collect import Collector, RunData, Tuning, Unavailable, unquote
from stepsage.report.graph import build_graph, runs_from_history

if TYPE_CHECKING:
    from matplotlib.figure import Figure

REPORT_FILE = "report.html"
SECTIONS = (
    ("pipeline", "1. Pipeline"),
    ("tuning", "2. Tuning"),
    ("training", "3. Training curves"),
    ("rules", "4. Debugger rules"),
    ("profiler", "5. Profiler"),
    ("test", "6. Test results"),
    ("endpoint", "7. Endpoint"),
)


@dataclass
class ReportResult:
    html_path: Path
    pngs: dict[str, Path] = field(default_factory=dict)
    # Kept only when asked for (tests inspect the axes); otherwise closed once saved.
    figures: dict[str, Figure] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)  # section id -> why data was missing


def build_report(
    execution_arn: str,
    out_dir: Path,
    *,
    clients: ClientFactory | None = None,
    samples: int = 16,
    endpoint_url: str | None = None,
) -> Path:
    """Read the execution through the AWS APIs and write `out_dir/report.html`; returns its path."""
    run = Collector(clients or aws_clients(endpoint_url), samples=samples).collect(execution_arn)
    return write_report(run, Path(out_dir)).html_path


def write_report(run: RunData, out_dir: Path, *, keep_figures: bool = False) -> ReportResult:
    out_dir.mkdir(parents=True, exist_ok=True)
    writer = _Writer(out_dir, keep_figures)
    renderers = {
        "pipeline": _pipeline,
        "tuning": _tuning,
        "training": _training,
        "rules": _rules,
        "profiler": _profiler,
        "test": _test,
        "endpoint": _endpoint,
    }
    sections = []
    for anchor, heading in SECTIONS:
        writer.section = anchor
        sections.append((anchor, heading, renderers[anchor](run, writer)))
    name = run.execution.get("name") or run.execution_arn.rsplit(":", 1)[-1]
    subtitle = f"Execution {run.execution_arn} · report written {_now()}"
    html_path = out_dir / REPORT_FILE
    html_path.write_text(page.document(f"stepsage run report: {name}", subtitle, sections), encoding="utf-8")
    writer.result.html_path = html_path
    return writer.result


class _Writer:
    """Saves each figure as NN-name.png, returns its inline <img>, and records notes for absent data."""

    def __init__(self, out_dir: Path, keep_figures: bool) -> None:
        self.out_dir = out_dir
        self.keep_figures = keep_figures
        self.result = ReportResult(html_path=out_dir / REPORT_FILE)
        self.section = ""

    def figure(self, name: str, figure: Figure, alt: str) -> str:
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=100)
        png = buffer.getvalue()
        path = self.out_dir / f"{len(self.result.pngs) + 1:02d}-{name}.png"
        path.write_bytes(png)
        self.result.pngs[name] = path
        if self.keep_figures:
            self.result.figures[name] = figure
        else:
            figure.clear()
        return page.image(png, alt)

    def unavailable(self, what: str, reason: str) -> str:
        self.result.notes.setdefault(self.section, f"{what}: {reason}")
        return page.unavailable(what, reason)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _when(value: Any) -> str:
    if isinstance(value, datetime.datetime):
        return value.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return "" if value is None else str(value)


def _seconds_between(start: Any, stop: Any) -> float | None:
    if isinstance(start, datetime.datetime) and isinstance(stop, datetime.datetime):
        return (stop - start).total_seconds()
    return None


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 90:
        return f"{seconds:.1f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


# ------------------------------------------------------------------------------------------ 1. pipeline


def _pipeline(run: RunData, writer: _Writer) -> str:
    from stepsage.report.graph import draw_figure

    execution = run.execution
    status = execution.get("status", "?")
    parts = [
        page.facts(
            [
                ("execution", execution.get("name")),
                ("status", page.Raw(page.badge(status))),
                ("started", _when(execution.get("startDate"))),
                ("stopped", _when(execution.get("stopDate"))),
                (
                    "duration",
                    _duration(_seconds_between(execution.get("startDate"), execution.get("stopDate"))),
                ),
                ("error", execution.get("error") or run.end.get("error")),
                ("cause", execution.get("cause") or run.end.get("cause")),
                ("state machine", execution.get("stateMachineArn")),
            ]
        )
    ]
    parts.append(_dataset_identity(run))
    model = build_graph(run.definition)
    model.runs = runs_from_history(run.events)
    parts.append(writer.figure("pipeline", draw_figure(model, f"Pipeline: {status}"), "the state machine"))
    rows = []
    for name in sorted(model.runs, key=lambda n: _first_entry(run.events, n)):
        state_run = model.runs[name]
        state_type = model.states.get(name, {}).get("Type", "")
        rows.append(
            [
                name,
                state_type,
                state_run.status,
                state_run.entries,
                _duration(state_run.seconds),
                state_run.error or "",
            ]
        )
    parts.append("<h3>States in the order they ran</h3>")
    parts.append(page.table(["state", "type", "status", "entries", "time", "error"], rows))
    return "".join(parts)


def _dataset_identity(run: RunData) -> str:
    """The staged dataset version and the one the model says it trained on: the same hash, or a warning."""
    document = run.document.get("dataset")
    staged: dict[str, Any] = document if isinstance(document, dict) else {}
    staged_hash = staged.get("dataset_hash")
    trained_hash = None if isinstance(run.run_info, Unavailable) else run.run_info.get("dataset_hash")
    if staged_hash and trained_hash:
        verdict = page.Raw(page.badge("same" if staged_hash == trained_hash else "DIFFERENT"))
    else:
        verdict = None
    return "<h3>Dataset version</h3>" + page.facts(
        [
            ("dataset", staged.get("dataset_name")),
            ("manifest", staged.get("manifest")),
            ("dataset hash (manifest)", staged_hash),
            ("dataset hash (model's run.json)", trained_hash),
            ("model trained on the staged version", verdict),
        ]
    )


def _first_entry(events: list[dict[str, Any]], name: str) -> int:
    for index, event in enumerate(events):
        if (event.get("stateEnteredEventDetails") or {}).get("name") == name:
            return index
    return len(events)


# ------------------------------------------------------------------------------------------ 2. tuning


def _tuning(run: RunData, writer: _Writer) -> str:
    from stepsage.report import plots

    tuning = run.tuning
    if isinstance(tuning, Unavailable):
        return writer.unavailable("Tuning jobs", tuning.reason)
    description = tuning.description
    objective = tuning.objective
    objective_name = objective.get("MetricName", "objective")
    maximize = objective.get("Type", "Maximize") == "Maximize"
    best = description.get("BestTrainingJob") or {}
    counters = description.get("TrainingJobStatusCounters") or {}
    config = description.get("HyperParameterTuningJobConfig") or {}
    limits = config.get("ResourceLimits") or {}
    best_value = (best.get("FinalHyperParameterTuningJobObjectiveMetric") or {}).get("Value")
    parts = [
        page.facts(
            [
                ("tuning job", description.get("HyperParameterTuningJobName")),
                ("status", page.Raw(page.badge(description.get("HyperParameterTuningJobStatus", "?")))),
                ("strategy", config.get("Strategy")),
                ("early stopping", config.get("TrainingJobEarlyStoppingType")),
                ("objective", f"{objective.get('Type', '')} {objective_name}"),
                ("trials", ", ".join(f"{k} {v}" for k, v in counters.items() if v) or "none"),
                ("limits", ", ".join(f"{k} {v}" for k, v in limits.items())),
                ("best trial", best.get("TrainingJobName")),
                ("best objective", f"{best_value:.4g}" if isinstance(best_value, float) else best_value),
                (
                    "best hyperparameters",
                    json.dumps({k: unquote(v) for k, v in (best.get("TunedHyperParameters") or {}).items()}),
                ),
            ]
        )
    ]
    if not tuning.trials:
        parts.append(writer.unavailable("Trials", "the tuning job listed no training jobs"))
        return "".join(parts)
    parts.append(
        writer.figure(
            "tuning-objective",
            plots.tuning_objective_figure(tuning.trials, objective_name, maximize, tuning.best_name),
            "objective per trial",
        )
    )
    parts.append(
        writer.figure(
            "tuning-hyperparameters",
            plots.tuning_hyperparameters_figure(
                tuning.trials, tuning.ranges, objective_name, tuning.best_name
            ),
            "objective per hyperparameter",
        )
    )
    parts.append(_trial_table(tuning, objective_name))
    return "".join(parts)


def _trial_table(tuning: Tuning, objective_name: str) -> str:
    from stepsage.report.plots import trial_objective

    names = list(tuning.ranges) or sorted(
        {k for t in tuning.trials for k in t.get("TunedHyperParameters", {})}
    )
    rows, best_rows = [], set()
    for index, trial in enumerate(tuning.trials):
        tuned = trial.get("TunedHyperParameters", {})
        if trial["TrainingJobName"] == tuning.best_name:
            best_rows.add(index)
        seconds = _seconds_between(trial.get("TrainingStartTime"), trial.get("TrainingEndTime"))
        rows.append(
            [
                index + 1,
                trial["TrainingJobName"],
                trial.get("TrainingJobStatus", ""),
                *(unquote(tuned.get(n, "")) for n in names),
                trial_objective(trial),
                _duration(seconds),
                trial.get("FailureReason", ""),
            ]
        )
    headers = ["#", "training job", "status", *names, objective_name, "time", "failure"]
    return "<h3>Every trial (best highlighted)</h3>" + page.table(headers, rows, highlight=best_rows)


# ------------------------------------------------------------------------------------------ 3. training


def _training(run: RunData, writer: _Writer) -> str:
    from stepsage.report import plots

    job = run.final_job
    if isinstance(job, Unavailable):
        return writer.unavailable("Final training job", job.reason)
    final_metrics = {m["MetricName"]: m["Value"] for m in job.get("FinalMetricDataList", [])}
    parts = [
        page.facts(
            [
                ("training job", job.get("TrainingJobName")),
                ("status", page.Raw(page.badge(job.get("TrainingJobStatus", "?")))),
                ("failure", job.get("FailureReason")),
                ("instance", (job.get("ResourceConfig") or {}).get("InstanceType")),
                ("training time", _duration(job.get("TrainingTimeInSeconds"))),
                ("billable time", _duration(job.get("BillableTimeInSeconds"))),
                ("final metrics", ", ".join(f"{k} {v:.4g}" for k, v in final_metrics.items())),
                ("model artifact", (job.get("ModelArtifacts") or {}).get("S3ModelArtifacts")),
            ]
        )
    ]
    history = run.metrics
    if isinstance(history, Unavailable):
        parts.append(writer.unavailable("Per-epoch metrics", history.reason))
        return "".join(parts)
    epochs = history.get("epochs") or []
    if not epochs:
        parts.append(writer.unavailable("Per-epoch metrics", "metrics.json holds no epochs"))
        return "".join(parts)
    if history.get("source"):
        parts.append(f"<p>Per-epoch metrics from {page.escape(history['source'])}.</p>")
    parts.append(writer.figure("training-curves", plots.training_curves_figure(epochs), "loss and accuracy"))
    best = history.get("best") or {}
    if best:
        stop = "; stopped early" if history.get("stopped_early") else ""
        parts.append(
            f"<p>Best epoch {page.escape(best.get('epoch'))}: valid accuracy "
            f"{float(best.get('valid_accuracy', 0)):.4f}, valid loss {float(best.get('valid_loss', 0)):.4f}"
            f"{page.escape(stop)}. The model artifact holds that epoch's weights.</p>"
        )
    keys = [
        k
        for k in ("train_loss", "valid_loss", "train_accuracy", "valid_accuracy", "lr", "epoch_seconds")
        if any(k in e for e in epochs)
    ]
    rows = [[e.get("epoch"), *(e.get(k) for k in keys)] for e in epochs]
    parts.append(
        "<details><summary>Epoch table</summary>" + page.table(["epoch", *keys], rows) + "</details>"
    )
    return "".join(parts)


# ------------------------------------------------------------------------------------------ 4. rules


def _rules(run: RunData, writer: _Writer) -> str:
    from stepsage.report import plots

    parts = []
    gate = run.document.get("rules")
    if isinstance(gate, dict):
        parts.append(
            page.facts(
                [
                    ("CheckRules verdict", page.Raw(page.badge(gate.get("verdict", "?")))),
                    ("mode", gate.get("mode")),
                    ("deploy gate", gate.get("gate")),
                    # Issues the gate reported without blocking on them (Overfit, Overtraining under `rules`).
                    ("advisories", ", ".join(gate.get("advisories") or []) or "none"),
                    ("proceeded to deploy", gate.get("proceed")),
                    # Why the gate let the run go on or stopped it (rules that did not run block unless
                    # DeployGate=always); older verdicts have no reason.
                    (
                        "blocked by",
                        page.Raw(page.badge(gate["blocked_by"])) if gate.get("blocked_by") else None,
                    ),
                    ("gate's reason", gate.get("reason")),
                ]
            )
        )
    job = run.final_job
    managed = [] if isinstance(job, Unavailable) else job.get("DebugRuleEvaluationStatuses") or []
    if managed:
        parts.append("<h3>Managed rule jobs (DebugRuleEvaluationStatuses)</h3>")
        rows = [
            [
                s.get("RuleConfigurationName"),
                s.get("RuleEvaluationStatus"),
                s.get("StatusDetails", ""),
                _when(s.get("LastModifiedTime")),
            ]
            for s in managed
        ]
        parts.append(page.table(["rule", "status", "details", "updated"], rows))
    verdicts = run.verdicts
    if isinstance(verdicts, Unavailable):
        if not managed:
            parts.append(writer.unavailable("Rule verdicts", verdicts.reason))
        return "".join(parts)
    summary = [
        [v.get("name"), v.get("status"), v.get("message"), v.get("params")] for v in verdicts.get("rules", [])
    ]
    parts.append(page.table(["rule", "verdict", "message", "parameters"], summary))
    if verdicts.get("training_complete") is False:
        parts.append(page.note("The trial had no end marker: the rules judged the steps that existed."))
    for verdict in verdicts.get("rules", []):
        name = str(verdict.get("name", "rule"))
        evidence = {k: v for k, v in (verdict.get("evidence") or {}).items() if k != "series"}
        parts.append(f"<h3>{page.escape(name)} {page.badge(verdict.get('status', '?'))}</h3>")
        parts.append(f"<p>{page.escape(verdict.get('message', ''))}</p>")
        figure = plots.rule_evidence_figure(verdict)
        if figure is not None:
            parts.append(writer.figure(f"rule-{name}", figure, f"{name} evidence"))
        else:
            parts.append(page.note(f"{name} recorded no evidence series."))
        if evidence:
            shown = json.dumps(evidence, indent=1, default=str)
            parts.append(
                f"<details><summary>Evidence numbers</summary><pre>{page.escape(shown)}</pre></details>"
            )
    return "".join(parts)


# ------------------------------------------------------------------------------------------ 5. profiler


def _profiler(run: RunData, writer: _Writer) -> str:
    from stepsage.report import plots

    profile = run.profile
    if isinstance(profile, Unavailable):
        return writer.unavailable("Profiler summary", profile.reason)
    bottleneck = profile.get("bottleneck") or {}
    parts = [
        f'<p class="words">{page.escape(bottleneck.get("summary") or "no bottleneck verdict recorded")}</p>'
    ]
    throughput = profile.get("throughput") or {}
    parts.append(
        page.facts(
            [
                ("device", profile.get("device")),
                ("precision", profile.get("precision")),
                (
                    "train throughput",
                    f"{throughput['train_img_s']:.1f} img/s" if "train_img_s" in throughput else None,
                ),
                (
                    "eval throughput",
                    f"{throughput['valid_img_s']:.1f} img/s" if "valid_img_s" in throughput else None,
                ),
                ("seconds per epoch", _duration(throughput.get("seconds_per_epoch"))),
                ("samples", f"{len(profile.get('samples') or [])} every {profile.get('interval_s')} s"),
            ]
        )
    )
    phases = profile.get("phases") or {}
    if phases:
        figure = plots.phase_split_figure(phases, bottleneck.get("phase"))
        parts.append(writer.figure("profiler-phases", figure, "time per phase"))
    else:
        parts.append(writer.unavailable("Phase split", "profile.json timed no phases"))
    samples = profile.get("samples") or []
    if samples:
        parts.append(writer.figure("profiler-system", plots.system_use_figure(samples), "system use"))
        if not profile.get("cuda"):
            parts.append("<p>No GPU on this job: CPU and memory only.</p>")
    else:
        parts.append(writer.unavailable("System use over time", "profile.json holds no samples"))
    return "".join(parts)


# ------------------------------------------------------------------------------------------ 6. test


def _test(run: RunData, writer: _Writer) -> str:
    from stepsage.report import plots

    parts = []
    evaluation = run.evaluation
    if isinstance(evaluation, Unavailable):
        parts.append(writer.unavailable("Test evaluation", evaluation.reason))
    else:
        labels = evaluation.get("labels") or []
        total = sum(map(sum, evaluation.get("confusion_matrix") or []))
        parts.append(
            f'<p class="words">Test accuracy <strong>{float(evaluation.get("accuracy", 0)):.4f}</strong> '
            f"on {total} images, {len(labels)} classes.</p>"
        )
        parts.append(
            writer.figure("per-class-accuracy", plots.per_class_accuracy_figure(evaluation), "per class")
        )
        parts.append(
            writer.figure("confusion-matrix", plots.confusion_matrix_figure(evaluation), "confusion")
        )
        confusions = plots.top_confusions(evaluation)
        if confusions:
            parts.append("<h3>Most frequent confusions</h3>")
            rows = [[t, p, n, f"{share:.0%}"] for t, p, n, share in confusions]
            parts.append(page.table(["true class", "predicted as", "images", "share of the class"], rows))
        per_class = evaluation.get("per_class") or {}
        rows = [
            [label, *(per_class.get(label, {}).get(k) for k in ("recall", "precision", "f1", "support"))]
            for label in labels
        ]
        table = page.table(["class", "accuracy (recall)", "precision", "F1", "images"], rows)
        parts.append(f"<details><summary>Per-class table</summary>{table}</details>")
    samples = run.samples
    parts.append("<h3>Sample predictions from the endpoint</h3>")
    if isinstance(samples, Unavailable):
        parts.append(writer.unavailable("Sample predictions", samples.reason))
    else:
        parts.append(
            writer.figure("sample-predictions", plots.sample_grid_figure(samples), "sample predictions")
        )
        failed = [s for s in samples if s.error]
        if failed:
            parts.append(page.note(f"{len(failed)} of {len(samples)} calls failed; first: {failed[0].error}"))
    return "".join(parts)


# ------------------------------------------------------------------------------------------ 7. endpoint


def _endpoint(run: RunData, writer: _Writer) -> str:
    endpoint = run.endpoint
    if isinstance(endpoint, Unavailable):
        return writer.unavailable("Endpoint", endpoint.reason)
    parts = []
    described = endpoint.description or {}
    if endpoint.problem:
        parts.append(writer.unavailable("DescribeEndpoint", endpoint.problem))
    variants = described.get("ProductionVariants") or []
    parts.append(
        page.facts(
            [
                ("endpoint", endpoint.name),
                ("status", page.Raw(page.badge(described["EndpointStatus"])) if described else None),
                ("endpoint config", described.get("EndpointConfigName")),
                ("created", _when(described.get("CreationTime"))),
                ("last modified", _when(described.get("LastModifiedTime"))),
                ("failure", described.get("FailureReason")),
                (
                    "variants",
                    ", ".join(
                        f"{v.get('VariantName')} ({v.get('CurrentInstanceCount', '?')} instance(s), "
                        f"weight {v.get('CurrentWeight', '?')})"
                        for v in variants
                    ),
                ),
            ]
        )
    )
    deployment = endpoint.deployment
    comparison = deployment.get("comparison") or {}
    parts.append("<h3>Champion / challenger</h3>")
    decision = comparison.get("decision") or endpoint.tags.get("stepsage:decision")
    parts.append(
        page.facts(
            [
                ("decision", page.Raw(page.badge(decision)) if decision else None),
                ("reason", comparison.get("reason") or endpoint.tags.get("stepsage:reason")),
                ("challenger accuracy", comparison.get("challenger_accuracy")),
                ("champion accuracy", comparison.get("champion_accuracy")),
                ("compared on images", comparison.get("images")),
                ("deployed", deployment.get("deployed")),
                ("new endpoint", deployment.get("created")),
                ("model", deployment.get("model_name")),
                ("previous config", deployment.get("previous_endpoint_config_name")),
            ]
        )
    )
    if not deployment.get("deployed", True):
        parts.append(page.note("The champion kept serving: this run's model was not deployed."))
    parts.append("<h3>Smoke test</h3>")
    smoke = endpoint.smoke_test
    if smoke:
        parts.append(
            page.facts(
                [
                    ("result", page.Raw(page.badge(smoke.get("status", "?")))),
                    ("accuracy", smoke.get("accuracy")),
                    ("images", smoke.get("images")),
                    ("failed calls", smoke.get("failed_calls")),
                    ("expected (evaluation.json)", smoke.get("expected_accuracy")),
                    ("threshold", smoke.get("threshold")),
                    ("old resources pruned", smoke.get("pruned")),
                ]
            )
        )
    else:
        reason = (
            "the champion was kept, so nothing new was tested"
            if deployment.get("deployed") is False
            else f"the execution ({run.execution.get('status')}) has no SmokeTest result"
        )
        parts.append(writer.unavailable("Smoke test", reason))
    stepsage_tags = {k: v for k, v in endpoint.tags.items() if k.startswith("stepsage")}
    if stepsage_tags:
        parts.append("<h3>Endpoint tags</h3>" + page.table(["tag", "value"], sorted(stepsage_tags.items())))
    return "".join(parts)
