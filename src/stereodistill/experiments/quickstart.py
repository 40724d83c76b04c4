"""The quickstart: a teacher, then one student trained twice — from scratch and distilled — compared.

The three runs come from one packaged recipe (``recipes/quickstart.yaml``): ``common`` holds what all
three share (data, optimiser, supervision), ``teacher`` and ``student`` the networks and step
counts, ``distill`` the terms only the distilled student adds. The two students therefore share
everything — architecture, seed (so initial weights and data order), steps, learning rate — except
the distillation terms, which makes their difference the effect of distillation alone.

Each run is an ordinary :class:`~stereodistill.train.trainer.Trainer` run with its own folder
(``runs/<role>/``: config, scalars, checkpoints); evaluation goes through the one metric protocol
and latency through :mod:`stereodistill.evaluate.benchmark`, as the CLI commands do.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch
import yaml

from stereodistill.config import check_steps, from_dict, keyword_parameters, merge_mappings
from stereodistill.errors import ConfigError
from stereodistill.runtime import machine_info
from stereodistill.train.config import RunConfig, scale_run_steps

ROLES = ("teacher", "student_scratch", "student_distilled")
#: How each run learns, for the progress log.
HOW = {
    "teacher": "on ground truth",
    "student_scratch": "on ground truth",
    "student_distilled": "distilled from the teacher",
}
RECIPE_KEYS = {"common", "teacher", "student", "distill", "students", "test", "bench"}


def load_recipe(path: str | Path | None = None, *, _within: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The packaged quickstart recipe, or a user's recipe. A user's recipe may name a ``base`` (the
    word ``quickstart`` for the packaged recipe, or a recipe file relative to its own folder) and hold
    only what differs from it: its sections are merged into the base's, setting by setting."""
    from stereodistill.config import load_yaml

    if path is None:
        with resources.as_file(resources.files("stereodistill.experiments.recipes") / "quickstart.yaml") as packaged:
            recipe = load_yaml(packaged)
    else:
        recipe = load_yaml(path)
        base = recipe.pop("base", None)
        if base is not None:
            if not isinstance(base, str) or not base:
                raise ConfigError(f"quickstart recipe {path}: base must be 'quickstart' or a recipe file, got {base!r}")
            within = (*_within, Path(path).resolve())
            base_path = None if base == "quickstart" else Path(path).parent / base
            if base_path is not None and base_path.resolve() in within:
                raise ConfigError(f"quickstart recipe {path}: base {base} forms a cycle of bases")
            recipe = merge_mappings(load_recipe(base_path, _within=within), recipe)
    unknown = sorted(set(recipe) - RECIPE_KEYS)
    missing = sorted({"common", "teacher", "student", "distill"} - set(recipe))
    problems = [f"unknown section(s) {', '.join(unknown)}"] if unknown else []
    problems += [f"missing section(s) {', '.join(missing)}"] if missing else []
    if problems:
        raise ConfigError(
            f"quickstart recipe {path or 'quickstart.yaml'}: {'; '.join(problems)} "
            f"(sections: {', '.join(sorted(RECIPE_KEYS))})"
        )
    for name in ("common", "teacher", "student", "distill"):
        if not isinstance(recipe[name], Mapping):
            raise ConfigError(f"quickstart recipe {path or 'quickstart.yaml'}: '{name}' must be a mapping of settings")
    return recipe


def family(arch: str) -> str:
    """The family an architecture belongs to: its name up to the first ``-`` (``lean-s`` → ``lean``)."""
    return arch.split("-", 1)[0]


def student_sections(recipe: Mapping[str, Any], student: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``student`` and ``distill`` sections for the student architecture ``student``.

    ``None`` is the recipe's own student. Otherwise the recipe's ``students`` section is looked up by
    the architecture, then by its family (``lean-s`` takes ``students.lean``, with its own arch): a
    student's distillation terms depend on the taps it offers, so each family brings its own. An
    architecture with no entry keeps the default student's steps and terms, on the new network, with
    those of the default network's options that the new one takes (``lean-s`` keeps ``census`` and
    ``fine``; ``dsnet`` only ``fine``, which every trainable network takes).
    """
    if student is None:
        return dict(recipe["student"]), dict(recipe["distill"])
    from stereodistill.models import list_models
    from stereodistill.models.base import COMMON_OPTIONS
    from stereodistill.models.zoo import model_class

    if student not in list_models():
        raise ConfigError(f"--student {student!r} is not an architecture; choose one of: {', '.join(list_models())}")
    per_arch = recipe.get("students") or {}
    if not isinstance(per_arch, Mapping):
        raise ConfigError("quickstart recipe: 'students' must map architecture names to {student, distill}")
    entry = per_arch.get(student, per_arch.get(family(student)))
    if entry is None:
        part, distill = dict(recipe["student"]), dict(recipe["distill"])
    else:
        unknown = sorted(set(entry) - {"student", "distill"})
        if unknown:
            raise ConfigError(f"quickstart recipe: students.{student}: unknown key(s) {', '.join(unknown)}")
        part, distill = dict(entry.get("student", recipe["student"])), dict(entry.get("distill", recipe["distill"]))
    model = dict(part.get("model", {}))
    if model.get("arch") != student:  # only the options the new network takes carry over
        found = keyword_parameters(model_class(student))
        takes = {*COMMON_OPTIONS, *(found[0] if found else ())}
        model["options"] = {key: value for key, value in (model.get("options") or {}).items() if key in takes}
    return {**part, "model": {**model, "arch": student}}, distill


def run_configs(
    recipe: Mapping[str, Any], out: Path, seed: int, steps_scale: float = 1.0, student: str | None = None
) -> dict[str, RunConfig]:
    """The three run configs of a recipe, rooted at ``out/runs/<role>``.

    ``steps_scale`` multiplies every run's steps (stages in fractions follow; absolute ones are scaled);
    ``student`` replaces the recipe's student architecture (see :func:`student_sections`).
    """
    runs = out / "runs"
    heldout_settings(recipe), bench_settings(recipe)  # checked before any work starts
    student_part, distill_part = student_sections(recipe, student)
    configs = {}
    for role, parts in (
        ("teacher", (recipe["teacher"],)),
        ("student_scratch", (student_part,)),
        ("student_distilled", (student_part, distill_part)),
    ):
        data: dict[str, Any] = dict(recipe["common"])
        for part in parts:
            data = merge_mappings(data, part)
        data = merge_mappings(data, {"name": role, "output": str(runs / role), "seed": seed})
        steps = check_steps(data.get("steps", 1), f"quickstart recipe ({role})")
        scale_run_steps(data, steps, steps_scale, f"quickstart recipe ({role})")  # or its absolute stages
        if role == "student_distilled":
            data["teacher"] = {"checkpoint": str(runs / "teacher" / "model")}
        data.setdefault("data", {}).setdefault("val", heldout_split(recipe, out))
        configs[role] = from_dict(RunConfig, data, where=f"quickstart recipe ({role})")
    if configs["student_scratch"].steps != configs["student_distilled"].steps:
        raise ConfigError("quickstart recipe: the two students must train for the same number of steps")
    return configs


def check_pairing(configs: Mapping[str, RunConfig]) -> None:
    """Build the distilled student's terms against an untrained teacher of the recipe's architecture,
    so that a term the pair cannot serve fails now, not after the teacher has trained."""
    from stereodistill.distill.terms import build_terms
    from stereodistill.models import build_model

    teacher, student = configs["teacher"].model, configs["student_distilled"]
    height, width = student.data.crop
    build_terms(
        student.distill.terms,
        build_model(student.model.arch, max_disp=student.model.max_disp, **student.model.options).train(),
        build_model(teacher.arch, max_disp=teacher.max_disp, **teacher.options).eval(),
        height,
        width,
    )


def heldout_split(recipe: Mapping[str, Any], out: Path) -> dict[str, Any]:
    """The held-out synthetic test split as a dataset config (written to disk by :func:`write_test_data`)."""
    return {
        "dataset": "sceneflow",
        "root": str(out / "data" / "synthetic"),
        "split": "test",
        "max_disp": heldout_settings(recipe)["max_disp"],
    }


@dataclass
class TestSplitSettings:
    """The recipe's ``test`` section: the held-out synthetic split, and how many of its pairs the report shows."""

    pairs: int = 20
    size: tuple[int, int] = (96, 192)
    max_disp: float = 48
    options: dict[str, Any] = field(default_factory=dict)  # the generator's, as data.train.options
    images: int = 3  # pairs shown in report.html

    def __post_init__(self) -> None:
        if self.pairs < 1 or min(self.size) < 1 or self.max_disp < 1 or self.images < 0:
            raise ConfigError("pairs, size and max_disp must be positive, images not negative")


@dataclass
class BenchSettings:
    """The recipe's ``bench`` section: the latency input and how it is timed."""

    size: tuple[int, int] = (256, 512)
    repeats: int = 5
    threads: int | None = None  # None: PyTorch's default

    def __post_init__(self) -> None:
        if min(self.size) < 1 or self.repeats < 1 or (self.threads is not None and self.threads < 1):
            raise ConfigError("size, repeats and threads must be positive")


def heldout_settings(recipe: Mapping[str, Any]) -> dict[str, Any]:
    """Size, disparity range and generator options of the test split: those of the training data
    unless the recipe's ``test`` section says otherwise, so both come from one distribution."""
    train = recipe["common"].get("data", {}).get("train", {})
    inherited = {key: train[key] for key in ("size", "max_disp", "options") if train.get(key) is not None}
    merged = {**inherited, **section(recipe, "test")}
    where = "quickstart recipe (test, or what it takes from common.data.train)"
    return asdict(from_dict(TestSplitSettings, merged, where=where))


def bench_settings(recipe: Mapping[str, Any]) -> dict[str, Any]:
    """The ``bench`` section, checked: latency input size, repeats and threads."""
    return asdict(from_dict(BenchSettings, section(recipe, "bench"), where="quickstart recipe (bench)"))


def section(recipe: Mapping[str, Any], name: str) -> dict[str, Any]:
    """One section of a recipe, which must be a mapping (an empty one when it is absent)."""
    value = recipe.get(name)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"quickstart recipe: '{name}' must be a mapping of settings, got {value!r}")
    return dict(value)


@dataclass
class Timer:
    """Wall-clock seconds per phase, for the report."""

    phases: dict[str, float] = field(default_factory=dict)
    start: float = field(default_factory=time.perf_counter)

    def lap(self, name: str, since: float) -> None:
        self.phases[name] = round(time.perf_counter() - since, 1)

    @property
    def total(self) -> float:
        return round(time.perf_counter() - self.start, 1)


def relative_path(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` when inside it (report.json stays valid if the tree moves)."""
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path.resolve())


def distillation_gain(models: Mapping[str, Any], dataset: str = "synthetic") -> dict[str, Any]:
    """How much lower the distilled student's EPE is than the scratch student's."""
    scratch = models["student_scratch"]["metrics"][dataset]["epe"]
    distilled = models["student_distilled"]["metrics"][dataset]["epe"]
    return {
        "dataset": dataset,
        "epe_scratch": scratch,
        "epe_distilled": distilled,
        "epe_reduction": scratch - distilled,
        "epe_reduction_rel": (scratch - distilled) / scratch if scratch else float("nan"),
        "distilled_beats_scratch": bool(distilled < scratch),
    }


Progress = Callable[[str], None]


def write_test_data(recipe: Mapping[str, Any], out: Path, seed: int, factor: int = 1) -> dict[str, Path]:
    """Write the synthetic test split (FlyingThings3D layout) and the Motorcycle pair (``factor``
    times smaller); return their roots."""
    from stereodistill.data.motorcycle import NAME as MOTORCYCLE
    from stereodistill.data.motorcycle import write_motorcycle
    from stereodistill.data.synthetic import SynthConfig, write_synthetic

    settings = heldout_settings(recipe)
    height, width = settings["size"]
    config = SynthConfig(height=height, width=width, max_disp=settings["max_disp"], **settings["options"])
    root = out / "data" / "synthetic"
    write_synthetic(root, settings["pairs"], config, seed=seed, split="test")
    return {"synthetic": root, MOTORCYCLE: write_motorcycle(out / "data" / MOTORCYCLE, factor)}


def evaluation_sets(recipe: Mapping[str, Any], roots: Mapping[str, Path], max_disp: int) -> dict[str, Any]:
    """The two evaluation datasets (Motorcycle as written: reduced so that its ground truth fits), scored
    below the networks' range ``max_disp`` as ``eval`` scores them, however far the test split's
    scenes reach."""
    from stereodistill.data.datasets import build_dataset
    from stereodistill.data.motorcycle import NAME as MOTORCYCLE

    scored_below = min(heldout_settings(recipe)["max_disp"], max_disp)
    return {
        "synthetic": build_dataset("sceneflow", roots["synthetic"], split="test", max_disp=scored_below),
        MOTORCYCLE: build_dataset("pairs", roots[MOTORCYCLE], max_disp=max_disp),
    }


def predictions(model: torch.nn.Module, samples: list[dict[str, Any]], device: torch.device) -> list[Any]:
    """Disparity maps (H×W NumPy) of ``model`` for the report's image samples."""
    with torch.no_grad():
        return [
            model(s["left"][None].to(device), s["right"][None].to(device)).disparity[0].float().cpu().numpy()
            for s in samples
        ]


def classical_baselines(
    datasets: Mapping[str, Any], max_disp: int, device: torch.device, log: Progress
) -> dict[str, Any]:
    """SGBM on the same evaluation sets, the floor a learned model must clear on real images; left
    out (said in the log) when OpenCV is not installed."""
    from stereodistill.checkpoint import load_network
    from stereodistill.evaluate.evaluator import evaluate_model

    try:
        import cv2  # noqa: F401
    except ImportError:
        log("      (no SGBM baseline: OpenCV is not installed; pip install 'stereodistill[sgbm]')")
        return {}
    sgbm = load_network("sgbm", device, max_disp=max_disp)
    return {"sgbm": {"arch": "sgbm", "metrics": evaluate_model(sgbm, datasets, device)}}


def student_threads(device: str, side_by_side: bool | None) -> int | None:
    """Threads per student when the two students train side by side, or None when they train one
    after the other. ``None`` (auto): side by side on a CPU with two threads or more. On a CPU the
    small students gain little from a second thread (on 2 cores a ``lean`` step is about 1.35x faster
    on two threads than on one beside another run), so two processes with half the threads each train
    about 1.45x more steps per second. ``True``: side by side anyway; ``False``: never."""
    from stereodistill.runtime import available_cpus, resolve_device

    threads = min(available_cpus(), torch.get_num_threads())
    if side_by_side is None:
        side_by_side = resolve_device(device).type == "cpu" and threads >= 2
    return max(1, threads // 2) if side_by_side else None


def run_quickstart(
    out: Path,
    *,
    seed: int = 0,
    recipe: Mapping[str, Any] | None = None,
    steps_scale: float = 1.0,
    device: str = "auto",
    repo_root: Path | None = None,
    bench_size: tuple[int, int] | None = None,
    student: str | None = None,
    force: bool = False,
    reads: Sequence[Path] = (),
    side_by_side: bool | None = None,
    log: Progress = print,
) -> dict[str, Any]:
    """Data → teacher → two students → evaluation → benchmark → report files; returns report.json's content.

    ``side_by_side``: train the two students at once, one process each with half the CPU threads
    (:func:`student_threads`; None: whenever the runs are on a CPU with two threads or more; False:
    one after the other, each with every thread; True: side by side anyway).

    ``out`` must be new or empty, unless ``force`` and it holds a previous run (then it is cleared
    first, unless it holds one of the files in ``reads``: the recipe file)."""
    from stereodistill.checkpoint import load_model
    from stereodistill.data.motorcycle import NAME as MOTORCYCLE
    from stereodistill.data.motorcycle import fit_factor, load_motorcycle
    from stereodistill.evaluate.benchmark import benchmark
    from stereodistill.evaluate.evaluator import evaluate_model
    from stereodistill.experiments.side_by_side import Job, train_side_by_side
    from stereodistill.fileio import write_text_atomic
    from stereodistill.report.quickstart_report import write_images, write_report
    from stereodistill.runtime import resolve_device
    from stereodistill.train.run_folder import RECIPE_MARK, claim, prepare_new_run
    from stereodistill.train.trainer import Trainer

    recipe = load_recipe() if recipe is None else recipe
    repo_root = Path.cwd() if repo_root is None else repo_root
    timer = Timer()
    configs = run_configs(recipe, out, seed, steps_scale, student)
    check_pairing(configs)
    for config in configs.values():
        config.device = device
    prepare_new_run(out, force=force, hint="give another --out, or --force to start over", reads=reads)
    out.mkdir(parents=True, exist_ok=True)
    claim(out)  # before anything is written: a second quickstart into this folder is refused while this one runs
    write_text_atomic(out / "recipe.yaml", RECIPE_MARK + "\n" + yaml.safe_dump(dict(recipe), sort_keys=False))

    since = time.perf_counter()
    settings = heldout_settings(recipe)
    log(
        f"[1/5] data: synthetic test split ({settings['pairs']} pairs, {settings['size'][0]}x{settings['size'][1]}, "
        f"max disparity {settings['max_disp']}) and the Middlebury Motorcycle pair; training pairs are generated "
        "in memory"
    )
    # Motorcycle's ground truth reaches 59.9 px: reduced until it fits the models' range, every
    # pixel with ground truth counts (at max disparity 32: half size).
    motorcycle_factor = fit_factor(load_motorcycle()[2], min(c.model.max_disp for c in configs.values()))
    roots = write_test_data(recipe, out, seed, motorcycle_factor)
    timer.lap("data", since)

    trained = {}
    parallel = student_threads(device, side_by_side)
    for role in ROLES if parallel is None else ROLES[:1]:
        config = configs[role]
        since = time.perf_counter()
        log(f"[2/5] training {role} ({config.model.arch}, {config.total_steps} steps, {HOW[role]})")
        result = Trainer(config, distill=role == "student_distilled").run()
        timer.lap(f"train_{role}", since)
        trained[role] = {"result": result, "seconds": timer.phases[f"train_{role}"]}
    if parallel is not None:
        since = time.perf_counter()
        students = ROLES[1:]
        log(
            f"[2/5] training {' and '.join(students)} side by side ({configs[students[0]].model.arch}, "
            f"{configs[students[0]].total_steps} steps; one process each, {parallel} thread"
            f"{'' if parallel == 1 else 's'} each; the first {HOW[students[0]]}, the second {HOW[students[1]]})"
        )
        jobs = {role: Job(configs[role], distill=role == "student_distilled") for role in students}
        trained |= train_side_by_side(jobs, parallel, log=log)
        timer.lap("train_students_side_by_side", since)

    since = time.perf_counter()
    dev = resolve_device(device)
    models = {role: load_model(Path(configs[role].output_dir) / "model", map_location=dev) for role in ROLES}
    max_disp = min(m.max_disp for m in models.values())
    datasets = evaluation_sets(recipe, roots, max_disp)
    log(f"[3/5] evaluating on the synthetic test split and zero-shot on Motorcycle ({dev.type})")
    metrics = {role: evaluate_model(models[role], datasets, dev) for role in ROLES}
    baselines = classical_baselines(datasets, max_disp, dev, log)
    shown = min(settings["images"], len(datasets["synthetic"]))
    samples = [datasets["synthetic"][i] for i in range(shown)] + [datasets[MOTORCYCLE][0]]
    labels = [f"synthetic {i + 1}" for i in range(shown)] + ["Motorcycle"]
    images = write_images(
        out / "images",
        labels,
        samples,
        {role: predictions(models[role], samples, dev) for role in ROLES},
        max_disp=float(max_disp),
    )
    timer.lap("evaluate", since)

    since = time.perf_counter()
    bench = bench_settings(recipe)
    height, width = bench_size or tuple(bench["size"])
    threads = bench["threads"] or torch.get_num_threads()
    log(
        f"[4/5] benchmarking at {height}x{width}, batch 1, {dev.type}"
        + (f", {threads} threads" if dev.type == "cpu" else "")
    )
    rows = benchmark(
        [str(Path(configs[role].output_dir) / "model") for role in ROLES],
        height,
        width,
        device=str(dev),
        repeats=bench["repeats"],
        warmup=1,
        threads=threads,
    )
    timer.lap("benchmark", since)

    motorcycle = datasets[MOTORCYCLE][0]
    report: dict[str, Any] = {
        "seed": seed,
        "max_disp": max_disp,
        "motorcycle": {"reduced_by": motorcycle_factor, "size": list(motorcycle["meta"]["size"])},
        "steps": {role: configs[role].total_steps for role in ROLES},
        "machine": machine_info(),
        "benchmark": {
            "size": [height, width],
            "device": str(dev),
            "threads": threads,
            "batch": 1,
            "repeats": bench["repeats"],
            "statistic": "median after 1 warm-up",
        },
        "models": {},
    }
    for role, row in zip(ROLES, rows, strict=True):
        checkpoint = Path(configs[role].output_dir) / "model.safetensors"
        report["models"][role] = {
            "arch": row["arch"],
            "checkpoint": relative_path(checkpoint, repo_root),
            "params": row["params"],
            "gmacs": row["gmacs"],
            "latency_ms": row["latency_ms"],
            "metrics": metrics[role],
            "train_seconds": trained[role]["seconds"],
            "run_dir": relative_path(Path(configs[role].output_dir), repo_root),
        }
    report["baselines"] = baselines
    report["distillation"] = distillation_gain(report["models"])
    report["timing_s"] = {**timer.phases, "total": timer.total}
    log("[5/5] writing report.json, report.md and report.html")
    write_report(out, report, images, {role: Path(configs[role].output_dir) for role in ROLES})
    return report
