"""`meddistill pipeline`: the whole default pipeline in one command.

generate data -> train the teacher -> distil the KD student -> train the no-KD student (same
labelled subset, same step budget) -> evaluate -> (with --install) write the checkpoints, weights
stored as float16, into assets/checkpoints/{teacher,student,student_nokd}/. Wall time of every stage goes to
OUT/pipeline.json. Sized to finish in well under 90 minutes on a 2-core CPU (see PROFILES).

  meddistill pipeline --out runs/default --install
  meddistill pipeline --out runs/fast --fast           (a few minutes: smoke test of every stage)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import shutil
import sys
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import torch

from model.distill.config import DistillConfig, TrainConfig, cpu_has_fast_bf16
from model.distill.data_plan import DataConfig, resolve_real_root

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "checkpoints"

@dataclass(frozen=True)
class Profile:
    """How big a pipeline run is; ``--set KEY=VALUE`` overrides one field."""

    n_cxr: int  # phantom chest X-rays (80/10/10 train/val/test)
    n_ct: int  # phantom CT slices
    image_size: int  # the presets' input size
    teacher_arch: str  # a TEACHER_PRESETS name
    student_arch: str  # a STUDENT_PRESETS name
    teacher_epochs: int  # upper bound; the time budget usually ends it sooner
    teacher_budget_s: float  # wall-clock budget of the teacher
    student_epochs: int
    student_budget_s: float  # KD student; the no-KD student then gets the same number of steps
    labelled_frac: float  # students' labelled subset; the rest is the KD student's transfer set
    max_per_source: int | None  # cap per data source (None = all)
    teacher_lr: float
    student_lr: float
    batch_size: int
    bf16: bool  # bfloat16 autocast + channels-last: 2.5-4x faster on AMX CPUs, 17x slower on AVX2 ones
    pretrain_images: int = 0  # teacher stage 0: distinct phantoms streamed (0 = no pre-training)
    pretrain_size: int = 128  # its input size (progressive resizing: the joint stage runs at image_size)
    pretrain_budget_s: float = 0.0  # its wall-clock budget (0 = none)
    teacher_freeze: str = ""  # comma-separated parameter prefixes frozen in the teacher's joint stage
    teacher_feature_epochs: int = 0  # frozen-trunk stage after the joint one (model.distill.feature_stage)
    teacher_feature_budget_s: float = 0.0  # its wall-clock budget (0 = none)
    student_feature_epochs: int = 0  # the same for both students (the no-KD one gets the KD one's steps)
    student_feature_budget_s: float = 0.0
    teacher_head_pool: str = ""  # override the teacher preset's head pooling ("avgmax", "lesion"; "" = the preset's)
    teacher_repeat: str = ""  # "source=k,...": rows repeated k times in the teacher's joint stage
    student_head_pool: str = ""  # the same override for both students (KD and no-KD: one architecture)

    def with_overrides(self, pairs: list[str]) -> Profile:
        """``["KEY=VALUE", ...]`` parsed by each field's current type ("None" clears an optional field)."""
        changes = {}
        for kv in pairs:
            key, _, value = kv.partition("=")
            known = [f.name for f in fields(self)]
            if key not in known:
                raise SystemExit(f"unknown profile key {key!r}; known: {', '.join(known)}")
            old = getattr(self, key)
            if value == "None":
                changes[key] = None
            elif isinstance(old, bool):
                changes[key] = value.strip().lower() in ("1", "true", "yes", "on")
            else:
                changes[key] = value if isinstance(old, str) else type(old or 0)(value)
        return replace(self, **changes)


#: sizing profiles; "default" was sized from measured teacher throughput on the 2-core CPU
_FROZEN_STEM = "encoder.trunk.conv1,encoder.trunk.bn1,encoder.trunk.layer1"
PROFILES: dict[str, Profile] = {
    # the quick profile: <= 90 minutes on the 2-core CPU, the full profile at 160 px with smaller budgets (pre-training 20 min, teacher 17 + 7 on cached
    # features, students 2 x (7 + 3) plus the feature caches, their set-up and the evaluation)
    "default": Profile(
        n_cxr=2400, n_ct=1000, image_size=160, teacher_arch="resnet50-4l", student_arch="mobilenet-1l",
        teacher_epochs=24, teacher_budget_s=1000.0, student_epochs=16, student_budget_s=420.0,
        labelled_frac=0.3, max_per_source=None, teacher_lr=1e-3, student_lr=2e-3, batch_size=32,
        bf16=cpu_has_fast_bf16(), pretrain_images=12_000, pretrain_size=160, pretrain_budget_s=1200.0,
        teacher_freeze=_FROZEN_STEM, teacher_feature_epochs=40, teacher_feature_budget_s=400.0,
        student_feature_epochs=40, student_feature_budget_s=180.0, teacher_head_pool="lesion",
        student_head_pool="lesion",
    ),
    # the shipped weights (issue 10, runs/v9): one input size, 160 px, for pre-training and every later stage:
    # pre-training 35 min on a stream of distinct phantoms, the joint stage 35 min with the stem frozen, 10 min
    # of heads + decoder on the cached trunk features, the students 5 + 2.5 min each. 160 px because the CT
    # tumour class was lost whenever the joint stage ran at another scale than pre-training (128 -> 224 px:
    # phantom CT at the majority rate, retrain_v8.json) and 224 px from the start costs 2x per step; CT at 160
    # px reached 0.72 on validation. The teacher's heads read a lesion map learned from the phantoms' masks
    # (ModelConfig.head_pool "lesion"). Budgets are wall time: with bf16 autocast (AVX-512 bf16, 2.2x faster
    # than fp32 here, benchmarks/results/bf16.json) the joint stage runs ~1.8 s per step of 32 at 160 px.
    "full": Profile(
        n_cxr=2400, n_ct=1000, image_size=160, teacher_arch="resnet50-4l", student_arch="mobilenet-1l",
        teacher_epochs=24, teacher_budget_s=2100.0, student_epochs=24, student_budget_s=300.0,
        labelled_frac=0.3, max_per_source=None, teacher_lr=1e-3, student_lr=2e-3, batch_size=32,
        bf16=cpu_has_fast_bf16(), pretrain_images=30_000, pretrain_size=160, pretrain_budget_s=2100.0,
        teacher_freeze=_FROZEN_STEM, teacher_feature_epochs=60, teacher_feature_budget_s=600.0,
        student_feature_epochs=60, student_feature_budget_s=150.0, teacher_head_pool="lesion",
        teacher_repeat="phantom_ct=3", student_head_pool="lesion",
    ),
    "fast": Profile(
        n_cxr=160, n_ct=80, image_size=64, teacher_arch="resnet50-4l", student_arch="mobilenet-1l",
        teacher_epochs=1, teacher_budget_s=120.0, student_epochs=2, student_budget_s=60.0,
        labelled_frac=0.3, max_per_source=60, teacher_lr=1e-3, student_lr=2e-3, batch_size=16, bf16=cpu_has_fast_bf16(),
        pretrain_images=64, pretrain_size=64, teacher_feature_epochs=1, student_feature_epochs=1,
        teacher_head_pool="lesion", student_head_pool="lesion",  # the smoke test runs the shipped path
    ),
}  # fmt: skip


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/default", help="run folder (data, checkpoints, pipeline.json)")
    p.add_argument("--fast", action="store_true", help="tiny sizes: a smoke test of every stage")
    p.add_argument(
        "--profile", choices=sorted(PROFILES), default="default",
        help="default: the quick run (<= 90 min on 2 cores); full: reproduces the shipped weights",
    )  # fmt: skip
    p.add_argument("--install", action="store_true", help="copy the checkpoints into assets/checkpoints/")
    p.add_argument("--real-data", default=None, help="real sets root (default: ../shared/data when present)")
    p.add_argument("--no-real", action="store_true", help="phantoms only")
    p.add_argument("--reuse", action="store_true", help="skip stages whose output already exists in OUT")
    p.add_argument(
        "--only", nargs="*", default=None,
        help="run only these stages (data pretrain teacher student nokd evaluate)",
    )
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override a profile entry")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _profile(args) -> Profile:
    return PROFILES["fast" if args.fast else args.profile].with_overrides(args.set)


def _checkpoint_done(path: Path) -> bool:
    return (path / "card.json").is_file() or (path / "model_card.json").is_file()


def main(args) -> int:
    from model.commands.train import resolve_preset
    from model.distill.recipes import distill_student, train_supervised

    prof = _profile(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    data_dir = out / "data"
    ckpt = {"teacher": out / "teacher", "student": out / "student", "student_nokd": out / "student_nokd"}
    record: dict = {
        "command": " ".join(["meddistill", *sys.argv[1:]]),
        "profile": asdict(prof),
        "machine": {
            "platform": platform.platform(),
            "torch_threads": torch.get_num_threads(),
            "python": sys.version.split()[0],
        },
        "stages": {},
    }
    doc_path = out / "pipeline.json"
    if args.reuse and doc_path.is_file():  # a resumed or partial run (--only) adds to the record, never erases it
        try:
            before = json.loads(doc_path.read_text())
            record["stages"] = dict(before.get("stages", {}))
            record["earlier_commands"] = [*before.get("earlier_commands", []), before.get("command")]
        except (json.JSONDecodeError, AttributeError):
            pass

    def save():
        doc_path.write_text(json.dumps(record, indent=2, default=str))

    def stage(name: str, fn, skip: bool = False):
        if args.only is not None and name not in args.only:
            return None
        if skip:  # keep what the run that made the output recorded
            record["stages"][name] = {**record["stages"].get(name, {}), "skipped": "output exists (--reuse)"}
            save()
            return None
        print(f"\n=== pipeline stage: {name} ===", flush=True)
        t0 = time.perf_counter()
        result = fn()
        record["stages"][name] = {"wall_s": round(time.perf_counter() - t0, 1), **(result or {})}
        save()
        return result

    t_all = time.perf_counter()
    stage(
        "data",
        lambda: _generate(data_dir, prof, args.seed, args.quiet),
        skip=args.reuse and (data_dir / "annotation.json").is_file(),
    )

    data = DataConfig(
        data_dir=str(data_dir),
        real_root=resolve_real_root(args.real_data, not args.no_real),
        image_size=prof.image_size,
        max_len=104,  # detailed reports run to ~100 tokens (99th percentile)
        max_per_source=prof.max_per_source,
        seed=args.seed,
    )
    # data audit of the real sets (duplicates, patients, shortcut probe): goes into every model card
    t_audit = time.perf_counter()
    audit = _audit_real(data.real_root)
    record["data_audit"] = {"wall_s": round(time.perf_counter() - t_audit, 1), "sets": audit}
    save()
    base = TrainConfig(
        batch_size=prof.batch_size,
        seed=args.seed,
        threads=args.threads,
        bf16=prof.bf16,
    )
    show = not args.quiet

    pretrained = out / "pretrain" / "pretrain.safetensors"

    def teacher_preset():
        cfg = resolve_preset(prof.teacher_arch)
        return dataclasses.replace(cfg, head_pool=prof.teacher_head_pool) if prof.teacher_head_pool else cfg

    def student_preset():
        cfg = resolve_preset(prof.student_arch)
        return dataclasses.replace(cfg, head_pool=prof.student_head_pool) if prof.student_head_pool else cfg

    def pretrain_stage():
        from model.distill.pretrain import PretrainConfig, pretrain

        cfg = dataclasses.replace(
            teacher_preset(),
            image_size=prof.pretrain_size,
            input_norm="per_image" if data.real_root is not None else "none",  # as _build will set it
        )
        from model.networks import build_model

        torch.manual_seed(args.seed)
        pcfg = PretrainConfig(
            n_images=prof.pretrain_images, image_size=prof.pretrain_size, batch_size=prof.batch_size,
            lr=prof.teacher_lr, time_budget_s=prof.pretrain_budget_s or None, seed=args.seed,
        )  # fmt: skip
        rec = pretrain(build_model(cfg), pcfg, out / "pretrain", resume=args.reuse, show_progress=show)
        return {k: rec[k] for k in ("steps", "images_seen", "validation")}

    if prof.pretrain_images:
        stage("pretrain", pretrain_stage, skip=args.reuse and pretrained.is_file())

    def teacher():
        card = train_supervised(
            teacher_preset(),
            data,
            replace(
                base,
                epochs=prof.teacher_epochs,
                lr=prof.teacher_lr,
                time_budget_s=prof.teacher_budget_s,
                init_from=str(pretrained) if prof.pretrain_images and pretrained.is_file() else None,
                freeze=tuple(p for p in prof.teacher_freeze.split(",") if p) if prof.pretrain_images else (),
                repeat_sources=tuple(
                    (k, int(v)) for k, _, v in (kv.partition("=") for kv in prof.teacher_repeat.split(",") if kv)
                ),
                feature_epochs=prof.teacher_feature_epochs,
                feature_budget_s=prof.teacher_feature_budget_s or None,
            ),
            ckpt["teacher"],
            role="teacher",
            show_progress=show,
        )
        return _summary(card)

    stage("teacher", teacher, skip=args.reuse and _checkpoint_done(ckpt["teacher"]))

    student_data = replace(data, labelled_frac=prof.labelled_frac)
    # students: no early stop (issue 10: KD and no-KD get the same step budget; the best-on-validation
    # weights are still the ones kept)
    student_tcfg = replace(
        base, epochs=prof.student_epochs, lr=prof.student_lr, patience=10_000,
        feature_epochs=prof.student_feature_epochs,
    )  # fmt: skip
    kd_tcfg = replace(
        student_tcfg, time_budget_s=prof.student_budget_s, feature_budget_s=prof.student_feature_budget_s or None
    )

    def student():
        card = distill_student(
            student_preset(),
            ckpt["teacher"],
            student_data,
            kd_tcfg,
            DistillConfig(),
            ckpt["student"],
            show_progress=show,
        )
        return _summary(card)

    stage("student", student, skip=args.reuse and _checkpoint_done(ckpt["student"]))

    def nokd():
        # same labelled subset, same optimiser-step budget as the KD student, stage by stage
        kd_card = json.loads(_card_path(ckpt["student"]).read_text())
        kd_stages = kd_card["training"]["stages"]
        budget = sum(s["steps"] for s in kd_stages.values())
        feature_steps = kd_stages.get("features", {}).get("steps")
        card = train_supervised(
            student_preset(),
            student_data,
            replace(
                student_tcfg, epochs=10_000, max_steps=kd_stages["joint"]["steps"],
                feature_epochs=10_000 if feature_steps else 0, feature_max_steps=feature_steps,
            ),  # fmt: skip
            ckpt["student_nokd"],
            role="student_nokd",
            tokenizer_from=ckpt["teacher"],
            show_progress=show,
        )
        return _summary(card) | {"step_budget": budget}

    stage("nokd", nokd, skip=args.reuse and _checkpoint_done(ckpt["student_nokd"]))
    if audit:
        _record_audit(ckpt, audit)
    stage("evaluate", lambda: _evaluate(ckpt, data_dir, out))
    if args.install:
        stage("install", lambda: _install(ckpt, data_dir))
    record["total_wall_s"] = round(time.perf_counter() - t_all, 1)
    save()
    print(json.dumps({k: v.get("wall_s") for k, v in record["stages"].items()}, indent=1))
    print(f"total {record['total_wall_s'] / 60:.1f} min; record in {doc_path}")
    return 0


def _audit_real(real_root: str | None) -> dict:
    """Per real set: its audit as shipped ("raw") and as the pipeline uses it ("used"); {} without one."""
    from model.data.audit import audit_real_sets

    return audit_real_sets(real_root) if real_root else {}


def _record_audit(ckpt: dict[str, Path], sets: dict) -> None:
    """Store the audit summary in each trained checkpoint's card (``data_audit``); --install keeps it."""
    for d in ckpt.values():
        try:
            path = _card_path(d)
        except FileNotFoundError:
            continue
        card = json.loads(path.read_text())
        card["data_audit"] = sets
        path.write_text(json.dumps(card, indent=2, default=str))


def _card_path(d: Path) -> Path:
    for name in ("card.json", "model_card.json"):
        if (d / name).is_file():
            return d / name
    raise FileNotFoundError(f"no model card in {d}")


def _summary(card: dict) -> dict:
    return {
        "parameters": card["parameters"],
        "arch": card["arch"],
        "validation": card["metrics"]["validation"],
        "train_stages": card["training"]["stages"],
    }


def _generate(data_dir: Path, prof: Profile, seed: int, quiet: bool) -> dict:
    from model.cli import main as cli

    argv = [
        "generate-data",
        "--out",
        str(data_dir),
        "--n-cxr",
        str(prof.n_cxr),
        "--n-ct",
        str(prof.n_ct),
    ]
    argv += ["--seed", str(seed), "--workers", "2"] + (["--quiet"] if quiet else [])
    rc = cli(argv)
    if rc:
        raise SystemExit(f"generate-data failed ({rc})")
    return {"n_cxr": prof.n_cxr, "n_ct": prof.n_ct}


def _evaluate(ckpt: dict[str, Path], data_dir: Path, out: Path) -> dict:
    try:
        from model.evaluate.run import evaluate
    except ImportError as err:
        return {"skipped": f"model.evaluate.run not available yet ({err})"}
    result = evaluate({k: v for k, v in ckpt.items()}, data_dir, out / "eval")
    return {"out": str(out / "eval"), "summary": result if isinstance(result, dict) else None}


def _install(ckpt: dict[str, Path], data_dir: Path | None = None, assets: Path | None = None) -> dict:
    """Write each checkpoint into assets/checkpoints/NAME/ with float16-stored weights (half the bytes
    in git; they load back into float32 models), plus its training log; not the resumable state.

    With ``data_dir``, each checkpoint first passes the install checks on the run's validation phantoms
    (``model.distill.checks``: collapse, own OOD rate, trivial baselines; issue 10). A failing one is not
    installed (the one already in assets stays) and its record goes to ``RUN/NAME/checks.json``; a
    passing one carries the record (``card["checks"]``) and its validation thresholds (``card["thresholds"]``).
    """
    from model.checkpoints import WEIGHTS, load_checkpoint, save_checkpoint
    from model.distill.checks import cases_from_phantom_dir, failure_message, run_checks
    from model.distill.trainer import LOG_NAME
    from model.inference import Predictor

    assets = ASSETS if assets is None else assets  # read at call time (tests point ASSETS elsewhere)
    cases = cases_from_phantom_dir(data_dir) if data_dir is not None else []
    installed, refused = {}, {}
    for name, src in ckpt.items():
        model, tokenizer, card, extras = load_checkpoint(src)
        if cases:
            record = run_checks(Predictor(model, tokenizer, card, extras, name), cases)
            (src / "checks.json").write_text(json.dumps(record, indent=1) + "\n")
            if not record["passed"]:
                message = failure_message(name, record)
                print(message, flush=True)
                verdicts = {k: c["passed"] for k, c in record["checks"].items()}
                refused[name] = {"message": message, "checks": verdicts}
                continue
            card = {**card, "checks": record, "thresholds": record["thresholds"]}
        dst = assets / name
        if dst.exists():
            shutil.rmtree(dst)
        save_checkpoint(dst, model, tokenizer, card, extras, weights_dtype=torch.float16)
        if (src / LOG_NAME).is_file():
            shutil.copy2(src / LOG_NAME, dst / LOG_NAME)
        installed[name] = {
            "files": sorted(p.name for p in dst.iterdir()),
            "mb": (dst / WEIGHTS).stat().st_size / 1e6,
        }
    return {"installed": installed, "refused": refused}
