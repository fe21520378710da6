"""Typed training configuration: dataclasses, and strict conversion of a plain dict into them.

Loading YAML files, `_base_` inheritance and command-line overrides live in `config_loader.py`;
this file only knows the schema, so every key and type is declared in exactly one place.
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Optional, Union

from ..errors import ConfigError
from ..utils.io import to_plain


@dataclass
class ModelConfig:
    name: str = "segformer-b0"
    num_classes: Optional[int] = None  # None: taken from the training dataset's class list
    # true (the variant's default published weights), a named alternative ("in22k"), a hub id
    # (hf-hub:ORG/NAME[@REV]) or a local file/folder: see segadapter.create_model
    pretrained: Union[bool, str, None] = None
    options: dict[str, Any] = field(default_factory=dict)  # passed to create_model(**options)


@dataclass
class DataConfig:
    dataset: str = "synthetic"
    root: Optional[str] = None
    train_split: str = "train"
    val_split: Optional[str] = "val"  # None: no validation during training
    crop_size: tuple[int, int] = (512, 512)  # (h, w); a single int means square
    scale: Optional[tuple[int, int]] = (2048, 512)  # (W, H) like MMSeg's img_scale; None: image size
    ratio_range: tuple[float, float] = (0.5, 2.0)
    cat_max_ratio: float = 0.75
    flip: bool = True
    photometric: bool = True
    batch_size: int = 16  # global: split evenly across DDP processes
    num_workers: int = 4
    options: dict[str, Any] = field(default_factory=dict)  # extra build_dataset kwargs
    val_options: dict[str, Any] = field(default_factory=dict)  # merged over `options` for val
    transform_options: dict[str, Any] = field(default_factory=dict)  # extra build_transforms kwargs
    # an unreadable training sample (truncated file, label of the wrong size or with ids past the
    # classes): false ends the run naming it, with a checkpoint of the last good step; true skips
    # it and logs it, until more than max_bad_share of the training files were bad
    skip_bad: bool = False
    max_bad_share: float = 0.01


@dataclass
class OptimConfig:
    lr: float = 6e-5
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.01
    head_lr_mult: float = 10.0  # the 'head' group (decode_head.* parameters)
    adapter_lr_mult: float = 7.0  # the 'adapter' group (adapters.* parameters)
    lr_mult: dict[str, float] = field(default_factory=dict)  # per group name; overrides the two above
    layer_decay: Optional[float] = None  # ConvNeXt layer-wise lr decay (0.9 in the paper); None: off
    no_decay_names: list[str] = field(default_factory=lambda: ["pos"])  # name substrings without wd
    grad_clip: Optional[float] = None  # max global grad norm; None: no clipping
    # micro-batches of data.batch_size per optimizer step (effective batch: batch_size x this);
    # schedule, logs and checkpoints count optimizer steps
    accumulate_steps: int = 1
    # PyTorch's fused AdamW kernel (same update, one pass over each tensor): None = wherever every
    # parameter lives on the CPU or a CUDA device (~7% off a CPU training step of segformer-b0)
    fused: Optional[bool] = None


@dataclass
class ScheduleConfig:
    max_iters: int = 160_000
    warmup_iters: int = 1500
    warmup_ratio: float = 1e-6  # lr factor at iteration 0
    power: float = 1.0  # poly exponent


@dataclass
class TrainConfig:
    seed: int = 0
    # autocast precision; auto: bf16 where the device computes it natively (CUDA, CPUs with AMX /
    # AVX-512 BF16), fp16 + loss scaling on GPUs without bf16, fp32 on other CPUs (runtime/amp.py)
    amp: Literal["auto", "none", "bf16", "fp16"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    channels_last: bool = False
    # torch.compile the training forward + loss (one compile per crop size; eager where no compiler)
    compile: bool = False
    log_interval: int = 50
    eval_interval: int = 16_000  # 0: only at the end
    checkpoint_interval: int = 16_000  # 0: only at the end
    keep_checkpoints: Optional[int] = None  # keep the last K checkpoint folders; None: all
    work_dir: str = "work_dirs"
    run_name: Optional[str] = None  # None: the config file's stem
    resume: bool = False
    progress: bool = True  # tqdm bar on rank 0
    # where logs go: jsonl (metrics.jsonl + curves.png), tensorboard (event files in the run
    # folder); None: both, tensorboard only where it is installed (pip install segadapter[tensorboard])
    loggers: Optional[list[Literal["jsonl", "tensorboard"]]] = None
    tensorboard_images: int = 4  # validation images in the image | label | prediction grid; 0: none
    max_bad_steps: int = 5  # stop after this many steps in a row with a non-finite loss or gradient


@dataclass
class EvalConfig:
    mode: Literal["whole", "slide"] = "whole"
    crop_size: Optional[tuple[int, int]] = None  # slide window (h, w)
    stride: Optional[tuple[int, int]] = None  # slide stride (h, w)
    flip: bool = False


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON-able dict (tuples become lists)."""
        return to_plain(dataclasses.asdict(self))


Origins = Mapping[str, str]  # dotted key -> where its value came from (file or override)


def config_from_dict(raw: Mapping[str, Any], origins: Origins | None = None) -> Config:
    """Validate `raw` against the schema; errors name the key, its origin and a close match."""
    cfg = _build(Config, raw, "", origins or {})
    _check_values(cfg, origins or {})
    return cfg


def schema_keys(cls: type = Config, prefix: str = "") -> list[str]:
    """All dotted leaf keys of the schema (used for did-you-mean suggestions)."""
    keys = []
    for f in dataclasses.fields(cls):
        tp = _hints(cls)[f.name]
        if dataclasses.is_dataclass(tp):
            keys += schema_keys(tp, f"{prefix}{f.name}.")
        else:
            keys.append(prefix + f.name)
    return keys


def origin_of(key: str, origins: Origins) -> str:
    """Where `key` (or, for a section, its first sub-key) was set; 'defaults' if nowhere."""
    key = key.split("[", 1)[0]  # optim.betas[1] was set with optim.betas
    if key in origins:
        return origins[key]
    for k, v in origins.items():
        if k.startswith(key + "."):
            return v
    return "defaults"


def error(key: str, message: str, origins: Origins) -> ConfigError:
    return ConfigError(f"{origin_of(key, origins)}: {key}: {message}")


def _suggest(key: str) -> str:
    known = schema_keys()
    leaf = key.rsplit(".", 1)[-1]  # a right leaf name in the wrong section: train.lr -> optim.lr
    close = [k for k in known if k.rsplit(".", 1)[-1] == leaf][:1]
    close = close or difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _build(cls: type, raw: Any, prefix: str, origins: Origins) -> Any:
    section = prefix.rstrip(".") or "config"
    if not isinstance(raw, Mapping):
        raise error(section, f"expected a mapping, got {_show(raw)}", origins)
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in names:
            full = prefix + str(key)
            raise ConfigError(f"{origin_of(full, origins)}: unknown key {full!r}{_suggest(full)}")
    values = {}
    for name in names & set(raw):
        tp, key = hints[name], prefix + name
        if dataclasses.is_dataclass(tp):
            values[name] = _build(tp, raw[name], key + ".", origins)
        else:
            values[name] = _coerce(raw[name], tp, key, origins)
    return cls(**values)


def _coerce(value: Any, tp: Any, key: str, origins: Origins) -> Any:
    """Check `value` against the annotation `tp`, with the few lenient conversions YAML needs."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, key, origins)
            except ConfigError:
                pass
        raise error(key, f"expected {_name(tp)}, got {_show(value)}", origins)
    if origin is Literal:
        if value in args:
            return value
        raise error(key, f"expected one of {', '.join(map(repr, args))}, got {_show(value)}", origins)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads `6e-5` (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    elif origin is tuple:
        if not isinstance(value, (list, tuple)) and len(args) == 2 and args[0] == args[1]:
            value = [value, value]  # `crop_size: 512` means 512 x 512
        if isinstance(value, (list, tuple)) and len(value) == len(args):
            return tuple(_coerce(v, a, f"{key}[{i}]", origins) for i, (v, a) in enumerate(zip(value, args)))
    elif origin is list:
        if isinstance(value, (list, tuple)):
            return [_coerce(v, args[0], f"{key}[{i}]", origins) for i, v in enumerate(value)]
    elif origin is dict:
        if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
            return dict(value)
    else:  # pragma: no cover - a schema type this function was not taught
        raise TypeError(f"unsupported config annotation {tp!r} for {key}")
    raise error(key, f"expected {_name(tp)}, got {_show(value)}", origins)


def _check_values(cfg: Config, origins: Origins) -> None:
    """Range checks that types alone cannot express."""
    positive = {
        "optim.lr": cfg.optim.lr, "schedule.max_iters": cfg.schedule.max_iters,
        "data.batch_size": cfg.data.batch_size, "train.log_interval": cfg.train.log_interval,
        "optim.accumulate_steps": cfg.optim.accumulate_steps, "train.max_bad_steps": cfg.train.max_bad_steps,
    }
    for key, v in positive.items():
        if v <= 0:
            raise error(key, f"must be > 0, got {v}", origins)
    non_negative = {
        "optim.weight_decay": cfg.optim.weight_decay, "schedule.warmup_iters": cfg.schedule.warmup_iters,
        "data.num_workers": cfg.data.num_workers, "train.eval_interval": cfg.train.eval_interval,
        "train.checkpoint_interval": cfg.train.checkpoint_interval,
        "train.tensorboard_images": cfg.train.tensorboard_images,
    }
    for key, v in non_negative.items():
        if v < 0:
            raise error(key, f"must be >= 0, got {v}", origins)
    if cfg.schedule.warmup_iters >= cfg.schedule.max_iters:
        raise error("schedule.warmup_iters", (
            f"must be < schedule.max_iters ({cfg.schedule.max_iters}, "
            f"set in {origin_of('schedule.max_iters', origins)})"), origins)
    if not 0 <= cfg.data.max_bad_share < 1:
        raise error("data.max_bad_share", f"must be in [0, 1), got {cfg.data.max_bad_share}", origins)
    if cfg.optim.layer_decay is not None and not 0 < cfg.optim.layer_decay <= 1:
        raise error("optim.layer_decay", f"must be in (0, 1], got {cfg.optim.layer_decay}", origins)
    if cfg.train.keep_checkpoints is not None and cfg.train.keep_checkpoints < 1:
        raise error("train.keep_checkpoints", "must be >= 1 (or null to keep all)", origins)
    if cfg.train.loggers is not None and len(set(cfg.train.loggers)) != len(cfg.train.loggers):
        raise error("train.loggers", f"names a logger twice: {cfg.train.loggers}", origins)
    if cfg.model.num_classes is not None and cfg.model.num_classes < 1:
        raise error("model.num_classes", f"must be >= 1, got {cfg.model.num_classes}", origins)
    if cfg.eval.mode == "slide" and (cfg.eval.crop_size is None or cfg.eval.stride is None):
        raise error("eval.mode", "'slide' needs eval.crop_size and eval.stride", origins)
    if min(cfg.data.crop_size) < 1:
        raise error("data.crop_size", f"must be positive, got {list(cfg.data.crop_size)}", origins)


def _name(tp: Any) -> str:
    if tp is type(None):
        return "null"
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_name(a) for a in args)
    if origin is tuple:
        return f"a list of {len(args)} ({', '.join(_name(a) for a in args)})"
    if origin is list:
        return f"a list of {_name(args[0])}"
    if origin is dict:
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


def _show(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"

