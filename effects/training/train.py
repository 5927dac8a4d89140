"""``knobnet train CONFIG``: train a conditioned model on a dataset folder, with a report.

Runs on the CLI's thread (torch uses ``train.threads`` threads). A config is a small YAML file::

    name: od3-concat-gru32
    data: {folder: out/datasets/od3, segment: 2048, warmup: 512}
    model: {type: gru, conditioning: concat, hidden_size: 32}
    loss: {esr: 1.0, mae: 0.0, mrstft: 0.0, pre_emphasis: true}
    train: {batch_size: 32, lr: 0.001, steps: 3000, validate_every: 250}
    out: out/od3-concat

Paths are relative to the config file. ``train.device`` is ``auto`` (a CUDA GPU when torch sees one,
else the CPU), ``cpu`` or ``cuda`` (``effects.training.device``: the recurrences stay on the CPU).
Segments start from zero state; the first ``warmup`` samples of each are left out of the loss while
the state settles. With ``data.balance_settings`` each segment first draws a knob setting, then a
pair of it, so a setting recorded once weighs as much as one recorded five times. Adam; with
``train.lr_schedule: plateau`` (the default) the learning rate halves after ``lr_patience``
validations without improvement, with ``cosine`` it falls from ``lr`` to 0 at ``steps`` along half
a cosine, step by step (no halving); training stops after ``early_stop`` validations without
improvement or at ``steps``. With ``train.ema`` (a decay such as 0.999; 0 = off) validation, the
best weights and the export use an exponential moving average of the weights (and of floating-point
buffers such as batch-norm statistics), which smooths the step-to-step noise of small batches; the
raw weights keep training, and plateau halving and early stopping follow the averaged loss.
``train.init_from`` starts from another run's best weights; with ``train.match_polarity`` (models
that can negate their output exactly: the DDSP amp) it first keeps whichever polarity validates
better, since a waveform loss rarely crosses from one polarity to the other.
``out/checkpoint.pt`` is written at every validation and a run given ``--resume`` goes on from it
exactly (model, optimiser, scheduler and batch sampler state); with ``train.steps`` raised, a finished
plateau-schedule run goes on as the longer run would have (``_same_run``). At the end the best weights are
exported (``out/model.npz``) and the *streaming* model (the kernels that play) is evaluated on every
test pair: ``out/report.md``, ``report.json``, ``loss_curves.png`` and ``error_bands.png`` (each test
pair's ESR split into octave bands: where the model misses).
"""
from __future__ import annotations

import contextlib
import json
import pathlib
import time

import numba
import numpy as np
import torch
import yaml

from effects.ddsp.amp import DDSP_DEFAULTS, build_ddsp
from effects.progress import Progress
from effects.training.device import resolve_device
from effects.training.data import load_dataset
from effects.training.losses import TrainingLoss, esr_by_band, metrics
from effects.training.rnn import RNN_DEFAULTS, count_params, rnn_builder
from effects.training.tcn_model import TCN_DEFAULTS, build_tcn


class ConfigError(ValueError):
    """The training config is malformed; the message names the key."""


DEFAULTS = {
    "name": None,
    "data": {"folder": None, "segment": 2048, "warmup": 512, "max_latency_ms": 5.0, "balance_settings": False},
    "model": {"type": "gru"},  # the other keys: MODEL_TYPES[type].defaults
    "loss": {"esr": 1.0, "mae": 0.0, "mrstft": 0.0, "pre_emphasis": True},
    "train": {"batch_size": 32, "lr": 1e-3, "steps": 3000, "validate_every": 250, "lr_patience": 2,
              "early_stop": 4, "grad_clip": 3.0, "seed": 0, "threads": 2, "init_from": None, "match_polarity": False,
              "device": "auto", "lr_schedule": "plateau", "ema": 0.0},
    "out": None,
    "pedal": None,
}


class ModelType:
    """A trainable model family: its config keys with defaults, and how to build it from them.

    ``build(model_cfg, num_conds)`` returns a torch module with ``forward(x, c)`` (batch, time) ->
    (batch, time), ``export(path, meta)`` and ``streaming_twin()``; the twin has ``stream()``,
    ``weights_into(cond, weights)``, ``num_conds`` and ``ops_per_sample`` (see ``finish``).
    ``invertible``: the model has ``invert_output()`` (negates its output exactly), which
    ``train.match_polarity`` needs. A model may carry ``build_notes`` (lines the log shows after building),
    ``count_params()`` (what the report counts, where not all of its torch parameters play) and
    ``after_init_from()`` (called once ``train.init_from``'s weights are in; returns a line for the log or None).
    """

    def __init__(self, defaults: dict, build, invertible: bool = False):
        self.defaults, self.build, self.invertible = defaults, build, invertible


MODEL_TYPES = {
    "gru": ModelType(RNN_DEFAULTS, rnn_builder("gru")),
    "lstm": ModelType(RNN_DEFAULTS, rnn_builder("lstm")),
    "tcn": ModelType(TCN_DEFAULTS, build_tcn),
    "ddsp": ModelType(DDSP_DEFAULTS, build_ddsp, invertible=True),
}


LR_SCHEDULES = ("plateau", "cosine")


def lr_scheduler(opt, tc: dict):
    """The learning-rate schedule of ``train.lr_schedule`` (module doc), and whether it steps at every
    training step (``cosine``) rather than at each validation with its loss (``plateau``)."""
    if tc["lr_schedule"] == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, int(tc["steps"]))), True
    return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=tc["lr_patience"]), False


class WeightAverage:
    """Exponential moving average of a model's parameters and floating-point buffers (``train.ema``).
    The decay is capped at (1 + t) / (10 + t) after t updates, so the average does not cling to the
    starting weights. (torch's ``swa_utils.AveragedModel`` keeps a deep copy of the model to validate
    and has no such warm-up; this swaps the average into the one model for validation and export.)"""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay, self.updates = decay, 0
        self.params = [*model.parameters(), *(b for b in model.buffers() if b.is_floating_point())]
        self.shadow = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for s, p in zip(self.shadow, self.params):
            s.lerp_(p.detach(), 1.0 - d)

    @torch.no_grad()
    def copy_to_model(self) -> None:
        for s, p in zip(self.shadow, self.params):
            p.copy_(s)

    @contextlib.contextmanager
    def applied(self):
        """The model holds the averaged weights inside the block, its own weights again after it."""
        own = [p.detach().clone() for p in self.params]
        self.copy_to_model()
        try:
            yield
        finally:
            with torch.no_grad():
                for o, p in zip(own, self.params):
                    p.copy_(o)

    def state_dict(self) -> dict:
        return {"updates": self.updates, "shadow": [s.clone() for s in self.shadow]}

    def load_state_dict(self, state: dict) -> None:
        self.updates = state["updates"]
        for s, v in zip(self.shadow, state["shadow"]):
            s.copy_(v)


def _merge_section(name: str, where: str, value, default: dict) -> dict:
    if not isinstance(value, dict):
        raise ConfigError(f"{name}: '{where}' must be a mapping")
    unknown = set(value) - set(default)
    if unknown:
        raise ConfigError(f"{name}: unknown key(s) in '{where}': {', '.join(sorted(unknown))}")
    merged = dict(default)
    for k, v in value.items():
        d = default[k]
        if d is not None and not isinstance(v, type(d)) and not (isinstance(d, float) and isinstance(v, int)):
            raise ConfigError(f"{name}: '{where}.{k}' must be {type(d).__name__}, got {v!r}")
        merged[k] = v
    return merged


def load_config(path) -> dict:
    """Read a YAML config, fill defaults, and check every key and type."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise ConfigError(f"config not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path.name}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path.name}: expected a mapping of sections")
    cfg = {}
    for key, default in DEFAULTS.items():
        value = raw.get(key, default)
        if key == "model":
            kind = value.get("type", "gru") if isinstance(value, dict) else None
            if kind is not None and kind not in MODEL_TYPES:
                raise ConfigError(f"{path.name}: model.type '{kind}' is not one of: {', '.join(MODEL_TYPES)}")
            default = {"type": "gru", **MODEL_TYPES[kind or "gru"].defaults}
        cfg[key] = _merge_section(path.name, key, value, default) if isinstance(default, dict) else value
    unknown = set(raw) - set(DEFAULTS)
    if unknown:
        raise ConfigError(f"{path.name}: unknown section(s): {', '.join(sorted(unknown))}")
    for required in ("data.folder", "out"):
        sec, _, k = required.partition(".")
        if (cfg[sec][k] if k else cfg[sec]) is None:
            raise ConfigError(f"{path.name}: '{required}' is required")
    cfg["data"]["folder"] = str((path.parent / cfg["data"]["folder"]).resolve())
    cfg["out"] = str((path.parent / cfg["out"]).resolve())
    if cfg["train"]["init_from"] is not None:
        cfg["train"]["init_from"] = str((path.parent / cfg["train"]["init_from"]).resolve())
    if cfg["train"]["lr_schedule"] not in LR_SCHEDULES:
        raise ConfigError(f"{path.name}: train.lr_schedule '{cfg['train']['lr_schedule']}' is not one of: "
                          f"{', '.join(LR_SCHEDULES)}")
    if not 0.0 <= cfg["train"]["ema"] < 1.0:
        raise ConfigError(f"{path.name}: train.ema (a decay) must be at least 0 and below 1, got {cfg['train']['ema']}")
    if cfg["train"]["match_polarity"] and not MODEL_TYPES[cfg["model"]["type"]].invertible:
        raise ConfigError(f"{path.name}: train.match_polarity: model type '{cfg['model']['type']}' "
                          "cannot invert its output")
    cfg["name"] = cfg["name"] or path.stem
    return cfg


def _same_run(old: dict, new: dict) -> bool:
    """Whether a checkpoint's config (``old``) makes the same run as ``new``.

    The device may differ (a run may resume on another one), and a key added to knobnet after the
    checkpoint was written counts as its default value. ``train.steps`` may grow under the plateau
    schedule when the old run's steps were a whole number of validations: the longer run's first
    steps are the old run's (cosine's curve depends on ``steps``; an extra validation at an odd end
    would have stepped the plateau scheduler).
    """
    t_old, t_new = {**DEFAULTS["train"], **(old.get("train") or {})}, new["train"]
    if (t_new["lr_schedule"] == "plateau" and t_new["steps"] > t_old["steps"]
            and t_old["steps"] % t_old["validate_every"] == 0):
        old = dict(old, train=dict(t_old, steps=t_new["steps"]))
    for section, value in new.items():
        if not isinstance(value, dict):
            if old.get(section) != value:
                return False
            continue
        defaults = DEFAULTS[section] if section != "model" else {"type": "gru", **MODEL_TYPES[value["type"]].defaults}
        before = old.get(section) or {}
        for k, v in value.items():
            if k != "device" and before.get(k, defaults.get(k)) != v:
                return False
    return True


def build_model(cfg: dict, num_conds: int) -> torch.nn.Module:
    m = cfg["model"]
    try:
        return MODEL_TYPES[m["type"]].build(m, num_conds)
    except ValueError as exc:
        raise ConfigError(f"model: {exc}") from None


class SegmentSampler:
    """Random (pair, offset) segments of the training pairs, from a saved-and-restorable generator.
    ``balance_settings``: draw a knob setting uniformly, then one of its pairs. A segment's loss (after its
    first ``warmup`` samples) never reaches into a target's unmeasured head (``Pair.measured_from``)."""

    def __init__(self, pairs, length: int, seed: int, balance_settings: bool = False, warmup: int = 0):
        self.first = {id(p): max(0, p.measured_from - warmup) for p in pairs}  # earliest offset per pair
        self.pairs = [p for p in pairs if len(p.x) - self.first[id(p)] >= length]
        if not self.pairs:
            raise ConfigError(f"no training pair is at least {length} samples long (segment + warmup)")
        self.length = length
        self.rng = np.random.default_rng(seed)
        by_setting: dict[tuple, list] = {}
        for p in self.pairs:
            by_setting.setdefault(tuple(p.cond.tolist()), []).append(p)
        self.groups = list(by_setting.values()) if balance_settings else [self.pairs]

    def _pick(self):
        # one draw per segment when unbalanced: the same batches as before the option existed
        group = self.groups[self.rng.integers(len(self.groups))] if len(self.groups) > 1 else self.groups[0]
        return group[self.rng.integers(len(group))]

    def batch(self, size: int, device: torch.device | str = "cpu"):
        x = np.empty((size, self.length), np.float32)
        y = np.empty_like(x)
        c = np.empty((size, len(self.pairs[0].cond)), np.float32)
        for b in range(size):
            p = self._pick()
            o = self.rng.integers(self.first[id(p)], len(p.x) - self.length + 1)
            x[b], y[b], c[b] = p.x[o:o + self.length], p.y[o:o + self.length], p.cond
        return tuple(torch.from_numpy(a).to(device) for a in (x, y, c))


def validation_from_training(pairs, count: int = 4) -> list:
    """Stand-in validation pairs for a dataset without a validation split: ``count`` training pairs
    taken in turn from each knob setting, so that choosing the best weights looks at every setting
    (the first pairs of a folder are often all one setting)."""
    by_setting: dict[tuple, list] = {}
    for p in pairs:
        by_setting.setdefault(tuple(p.cond.tolist()), []).append(p)
    chosen, queues = [], list(by_setting.values())
    while len(chosen) < min(count, len(pairs)):
        for q in queues:
            if q and len(chosen) < count:
                chosen.append(q.pop(0))
    return chosen


def init_weights(model, path) -> None:
    """Start from another run's best weights (its checkpoint.pt): fine-tuning with a new recipe."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise ConfigError(f"train.init_from: no checkpoint at {path}")
    ckpt = torch.load(path, weights_only=False, map_location="cpu")
    weights = ckpt["state"].get("best_model") or ckpt["model"]
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise ConfigError(f"train.init_from: {path.name} holds another model ({str(exc).splitlines()[0]})") from None


def stream_pair(twin, pair, block_size: int = 4096) -> np.ndarray:
    """Run the streaming model (the kernels that play) over a whole pair at its knobs; a stream with
    ``settle`` (the recurrent ones, ``effects.rest``) from its idle state there, as its pedal plays."""
    s = twin.stream()
    twin.weights_into(pair.cond, s.weights)
    if hasattr(s, "settle"):
        s.settle()
    out = np.empty(len(pair.x), np.float32)
    for i in range(0, len(pair.x), block_size):
        s.run(pair.x[i:i + block_size], out[i:i + block_size])
    return out


def streaming_rtf(twin, sample_rate: int, block_size: int = 128, seconds: float = 2.0) -> float:
    s = twin.stream()
    twin.weights_into(np.zeros(twin.num_conds, np.float32), s.weights)
    x = (0.3 * np.sin(np.arange(int(seconds * sample_rate)) * 0.05)).astype(np.float32)
    out = np.empty(block_size, np.float32)
    s.run(x[:block_size], out)
    t0 = time.perf_counter()
    for i in range(0, len(x) - block_size + 1, block_size):
        s.run(x[i:i + block_size], out)
    return seconds / (time.perf_counter() - t0)


def train(config_path, resume: bool = False, log=print, steps_this_run: int | None = None,
          finish_now: bool = False) -> dict | None:
    """Train per the config; returns the report dict (also written to out/report.json).

    steps_this_run stops early with a checkpoint (returns None); ``resume`` goes on from it.
    finish_now (with resume) skips further training: export and report the best weights so far.
    """
    cfg = load_config(config_path)
    tc, dc = cfg["train"], cfg["data"]
    torch.set_num_threads(int(tc["threads"]))
    numba.set_num_threads(max(1, min(int(tc["threads"]), numba.config.NUMBA_NUM_THREADS)))  # the recurrences' prange
    torch.manual_seed(int(tc["seed"]))
    try:
        device = resolve_device(tc["device"])
    except ValueError as exc:
        raise ConfigError(f"train.device: {exc}") from None
    ds = load_dataset(dc["folder"], max_latency_ms=dc["max_latency_ms"])
    for w in ds.warnings:
        log(f"knobnet: warning: {w}")
    out = pathlib.Path(cfg["out"])
    out.mkdir(parents=True, exist_ok=True)
    model = build_model(cfg, len(ds.knob_ranges))
    for line in getattr(model, "build_notes", ()):
        log(line)
    field = getattr(model, "receptive_field", 1)
    if dc["warmup"] < field - 1:
        raise ConfigError(f"data.warmup ({dc['warmup']}) is shorter than the model's receptive field ({field} "
                          f"samples): the loss would see outputs computed from zero padding; set it to {field - 1}")
    model.to(device)
    loss_fn = TrainingLoss(**cfg["loss"]).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=tc["lr"])
    sched, sched_per_step = lr_scheduler(opt, tc)
    warmup = dc["warmup"]
    sampler = SegmentSampler(ds.split("train"), dc["segment"] + warmup, tc["seed"], bool(dc["balance_settings"]),
                             warmup)
    valid = ds.split("valid") or validation_from_training(ds.split("train"))
    state = {"step": 0, "history": [], "best_valid": float("inf"), "bad": 0, "best_model": None}
    ckpt_path = out / "checkpoint.pt"
    if tc["init_from"] is not None and not (resume and ckpt_path.is_file()):
        init_weights(model, tc["init_from"])
        log(f"starting from the best weights of {tc['init_from']}")
        if hasattr(model, "after_init_from") and (note := model.after_init_from()):
            log(note)
    if resume and ckpt_path.is_file():
        ckpt = torch.load(ckpt_path, weights_only=False, map_location="cpu")
        if not _same_run(ckpt["config"], cfg):
            raise ConfigError(f"{ckpt_path} was made with another config; remove it or train without --resume")
        try:
            model.load_state_dict(ckpt["model"])
            opt.load_state_dict(ckpt["opt"])
        except (RuntimeError, ValueError) as exc:  # saved by an older version of the model (other parameters)
            raise ConfigError(f"{ckpt_path} holds another version of this model ({str(exc).splitlines()[0]}); "
                              f"train without --resume, or start from it with train.init_from") from None
        sched.load_state_dict(ckpt["sched"])
        sampler.rng.bit_generator.state = ckpt["rng"]
        torch.set_rng_state(ckpt["torch_rng"])
        if device.type == "cuda" and ckpt.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(ckpt["cuda_rng"], device)
        state = ckpt["state"]
        log(f"resumed {cfg['name']} at step {state['step']}")
    log(f"training on {device}" + (f" ({torch.cuda.get_device_name(device)}; recurrences on the CPU)"
                                   if device.type == "cuda" else f", {tc['threads']} thread(s)"))

    def validate() -> float:
        model.eval()
        with torch.no_grad():
            losses = []
            for p in valid:
                x, y, c = (torch.from_numpy(a)[None].to(device) for a in (p.x, p.y, p.cond))
                scored = max(warmup, p.measured_from)
                losses.append(float(loss_fn(model(x, c)[:, scored:], y[:, scored:])))
        model.train()
        return float(np.mean(losses))

    if tc["match_polarity"] and state["step"] == 0:
        kept = validate()
        model.invert_output()
        flipped = validate()
        invert = flipped < kept  # (False when either is NaN: the weights stay as they came)
        if not invert:
            model.invert_output()
        log(f"output polarity: validation loss {kept:.4f} as it is, {flipped:.4f} inverted: "
            + ("inverted" if invert else "kept"))

    average = WeightAverage(model, tc["ema"]) if tc["ema"] > 0 else None
    if average is not None and resume and ckpt_path.is_file():
        average.load_state_dict(ckpt["ema"])
    started = time.perf_counter() - state.get("seconds", 0.0)
    train_losses = state.setdefault("train_losses", [])
    run_until = state["step"] + steps_this_run if steps_this_run is not None else None

    def save_checkpoint():
        state["seconds"] = time.perf_counter() - started
        torch.save({"config": cfg, "model": model.state_dict(), "opt": opt.state_dict(),
                    "sched": sched.state_dict(), "rng": sampler.rng.bit_generator.state,
                    "torch_rng": torch.get_rng_state(), "state": state,
                    "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                    "ema": average.state_dict() if average is not None else None}, ckpt_path)
    with Progress(tc["steps"], f"training {cfg['name']}", "steps") as bar:
        while state["step"] < tc["steps"] and state["bad"] < tc["early_stop"] and not finish_now:
            x, y, c = sampler.batch(tc["batch_size"], device)
            loss = loss_fn(model(x, c)[:, warmup:], y[:, warmup:])
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), tc["grad_clip"])
            opt.step()
            if sched_per_step:
                sched.step()
            if average is not None:
                average.update()
            train_losses.append(loss.item())
            state["step"] += 1
            bar.update(state["step"], extra=f"loss {np.mean(train_losses[-20:]):.4f}  best valid {state['best_valid']:.4f}")
            if state["step"] % tc["validate_every"] == 0 or state["step"] == tc["steps"]:
                with average.applied() if average is not None else contextlib.nullcontext():
                    v = validate()
                    improved = v < state["best_valid"]
                    if improved:
                        state["best_model"] = {k: t.clone() for k, t in model.state_dict().items()}
                if not sched_per_step:
                    sched.step(v)
                state["history"].append({"step": state["step"], "train": float(np.mean(train_losses)), "valid": v,
                                         "lr": opt.param_groups[0]["lr"]})
                train_losses.clear()
                if improved:
                    state["best_valid"], state["bad"] = v, 0
                else:
                    state["bad"] += 1
                save_checkpoint()
            if run_until is not None and state["step"] >= run_until and state["step"] < tc["steps"]:
                save_checkpoint()
                log(f"stopped at step {state['step']}; continue with --resume")
                return None
    if state["best_model"] is not None:
        model.load_state_dict(state["best_model"])
    elif average is not None:  # nothing validated yet (finish_now before the first validation)
        average.copy_to_model()
    model.cpu()
    return finish(cfg, model, ds, state, out)


def finish(cfg, model, ds, state, out: pathlib.Path) -> dict:
    """Export the best weights, evaluate the streaming model on the test pairs, write the report."""
    twin = model.streaming_twin()
    per_pair = []
    for p in ds.split("test"):
        y, target = stream_pair(twin, p)[p.measured_from:], p.y[p.measured_from:]
        per_pair.append({"pair": p.name, "knobs": p.knobs, **metrics(y, target),
                         "esr_bands": esr_by_band(y, target, ds.sample_rate)})
    summary = {k: float(np.mean([r[k] for r in per_pair])) for k in ("esr", "esr_pre_emphasis", "mae", "mrstft")} if per_pair else {}
    report = {"name": cfg["name"], "config": cfg, "steps": state["step"], "train_seconds": state.get("seconds", 0.0),
              "params": model.count_params() if hasattr(model, "count_params") else count_params(model), "ops_per_sample": int(twin.ops_per_sample),
              "rtf_at_128": streaming_rtf(twin, ds.sample_rate), "sample_rate": ds.sample_rate,
              "best_valid_loss": state["best_valid"], "history": state["history"], "test": per_pair, "test_mean": summary}
    model.export(out / "model.npz", meta={"name": cfg["name"], "pedal": cfg["pedal"], "sample_rate": ds.sample_rate,
                                           "knobs": {k: list(v) for k, v in ds.knob_ranges.items()},
                                           "test_mean": summary})
    (out / "report.json").write_text(json.dumps(report, indent=1))
    plot_history(state["history"], out / "loss_curves.png", cfg["name"])
    plot_error_bands(per_pair, out / "error_bands.png", cfg["name"])
    (out / "report.md").write_text(report_markdown(report))
    return report


def _semilogy_figure(path, title: str, xlabel: str, ylabel: str, draw) -> None:
    """A 7 x 4 in PNG at ``path``: ``draw(ax)`` plots on log-y axes with a grid, title and labels."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    ax.set_yscale("log")
    draw(ax)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_history(history, path, title: str) -> None:
    def draw(ax):
        if history:
            steps = [h["step"] for h in history]
            ax.plot(steps, [h["train"] for h in history], label="train loss")
            ax.plot(steps, [h["valid"] for h in history], label="validation loss")
            ax.legend()
    _semilogy_figure(path, title, "step", "loss", draw)


def plot_error_bands(per_pair, path, title: str) -> None:
    """Each test pair's ESR split into octave bands (``losses.esr_by_band``), one line per pair."""
    def draw(ax):
        for t in per_pair:
            bands = t["esr_bands"]
            ax.plot(range(len(bands)), np.maximum(list(bands.values()), 1e-6), marker="o",
                    label=f"{t['pair']} (ESR {t['esr']:.3f})")
        if per_pair:
            names = list(per_pair[0]["esr_bands"])
            ax.set_xticks(range(len(names)), names, rotation=30, fontsize=8)
            ax.legend(fontsize=7)
    _semilogy_figure(path, f"{title}: where the test error lies", "band (Hz)", "error energy / target energy", draw)


def report_markdown(r: dict) -> str:
    lines = [f"# {r['name']}", "",
             f"- model: {r['config']['model']}", f"- params {r['params']:,}, ops/sample {r['ops_per_sample']:,}, "
             f"streaming real-time factor at 128-sample blocks {r['rtf_at_128']:.1f}x",
             f"- {r['steps']} steps in {r['train_seconds'] / 60:.1f} min, best validation loss {r['best_valid_loss']:.5f}",
             "", "![loss curves](loss_curves.png)", "",
             "| test pair | knobs | ESR | ESR (pre-emph.) | MAE | MRSTFT |", "|---|---|---|---|---|---|"]
    for t in r["test"]:
        knobs = " ".join(f"{k}={v:.2f}" for k, v in t["knobs"].items())
        lines.append(f"| {t['pair']} | {knobs} | {t['esr']:.4f} | {t['esr_pre_emphasis']:.4f} | {t['mae']:.4f} | {t['mrstft']:.3f} |")
    if r["test_mean"]:
        m = r["test_mean"]
        lines.append(f"| **mean** | | **{m['esr']:.4f}** | {m['esr_pre_emphasis']:.4f} | {m['mae']:.4f} | {m['mrstft']:.3f} |")
    if r["test"]:
        bands = list(r["test"][0]["esr_bands"])
        lines += ["", "ESR by octave band (error energy in the band / the target's whole energy; a row adds up to the ESR):",
                  "", "![error by band](error_bands.png)", "",
                  "| test pair | " + " | ".join(f"{b} Hz" for b in bands) + " |", "|---" * (len(bands) + 1) + "|"]
        for t in r["test"]:
            lines.append(f"| {t['pair']} | " + " | ".join(f"{v:.4f}" for v in t["esr_bands"].values()) + " |")
    return "\n".join(lines) + "\n"
