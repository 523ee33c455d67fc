"""Strategy and dataset plugins that break their contract in ways nasframe used to report with a
traceback, a silent wrong result or the user's blame (walk16: F2, F5, F6, F7, F12, F13, F14, F16,
F25): each is one line naming the plugin (exit status 2), and a user's wrong option value is the
user's, at its config key."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import SPACES

from nasframe import Dataset, UserError
from nasframe.checked_strategy import CheckedStrategy
from nasframe.cli import main
from nasframe.config import DataConfig
from nasframe.data import load_dataset
from nasframe.option_kinds import checked_options
from nasframe.registry import PluginFailure
from nasframe.runstate import RunState

IN_CODE = "registered in code as test_plugin_faults_strategy_data:"
ADVICE = "this is a bug in that plugin: fix it, or report it to its authors"


def _one_line(args: list[str], capsys) -> str:
    """The last line of stderr of a refused command (exit status 2, no traceback)."""
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return err.strip().splitlines()[-1]


def _search(tmp_path, search: str, *extra: str) -> list[str]:
    """``nasframe search`` of spaces/mlp.yaml (1 epoch) with ``search`` opening its section."""
    text = (SPACES / "mlp.yaml").read_text()
    assert "search:\n" in text
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text.replace("search:\n", search, 1))
    return ["search", str(cfg), "--out", str(tmp_path / "run"), "--quiet", "--set"] + [
        "search.epochs=1",
        *extra,
    ]


# ----------------------------------------------------------------------------------- strategies
class Uniform:
    """A minimal strategy plugin, as a third party writes one (not an ASNG subclass)."""

    def __init__(self, categories, *, lam=2, seed=None, lr: float = 0.1, rows: int = 1):
        self.categories = [int(c) for c in categories]
        self.lam, self.lr, self.t = lam, lr, 0
        self.rng = np.random.default_rng(seed)
        self._theta = np.zeros((len(self.categories), max(self.categories)))
        for i, c in enumerate(self.categories):
            self._theta[i, :c] = 1.0 / c

    @property
    def theta(self):
        return self._theta

    def sample(self, n):
        return np.stack([self.rng.integers(0, c, size=n) for c in self.categories], 1)

    def update(self, samples, losses):
        self.t += 1

    def mle(self):
        return np.zeros(len(self.categories), dtype=np.int64)

    def converged(self, fraction):
        return False

    def convergence(self):
        return 0.25

    def state_dict(self):
        return {"t": self.t}

    def load_state_dict(self, state):
        self.t = int(state["t"])


class ThetaWrongShape(Uniform):
    @property
    def theta(self):
        return self._theta[:, :1]


class ThetaText(Uniform):
    @property
    def theta(self):
        return [["a"] * self._theta.shape[1]] * self._theta.shape[0]


class ThetaTensor(Uniform):
    @property
    def theta(self):
        return torch.from_numpy(self._theta)


class ConvergedText(Uniform):
    def converged(self, fraction):
        return "yes"


class ConvergenceText(Uniform):
    def convergence(self):
        return "high"


class LoadRaises(Uniform):
    def load_state_dict(self, state):
        raise RuntimeError("acme: cannot restore")


def test_a_strategy_whose_theta_has_the_wrong_shape_is_named_before_the_search(
    tmp_path, capsys, plugin
):
    plugin("strategy", "test_theta_shape", ThetaWrongShape)
    line = _one_line(_search(tmp_path, "search:\n  strategy: test_theta_shape\n"), capsys)
    assert line.startswith(
        f"strategy plugin 'test_theta_shape' ({IN_CODE}ThetaWrongShape) has a theta of shape "
        "(5, 1) and type float64, not numbers of shape (5, 4) (one row per choice, padded to the "
        "largest number of options; read from the start of the search); "
    ), line
    assert ADVICE in line
    assert not (tmp_path / "run" / "checkpoint.pt").exists()  # refused before any epoch


def test_a_strategys_theta_must_be_numbers_and_may_be_a_tensor_or_lists(plugin):
    plugin("strategy", "test_theta_text", ThetaText)
    with pytest.raises(PluginFailure, match=r"has a theta of shape \(2, 4\) and type <U1, not"):
        CheckedStrategy(ThetaText([3, 4]), "test_theta_text", [3, 4])
    lazy = Uniform([3, 4])
    lazy._theta = None  # set only at its first sample: said as what it is
    with pytest.raises(PluginFailure, match=r"has theta None, not numbers of shape \(2, 4\)"):
        CheckedStrategy(lazy, "test_theta_tensor", [3, 4])
    wrapped = CheckedStrategy(ThetaTensor([3, 4]), "test_theta_tensor", [3, 4])
    assert isinstance(wrapped.theta, np.ndarray) and wrapped.theta.shape == (2, 4)


def test_a_strategy_whose_converged_returns_no_bool_is_named(tmp_path, capsys, plugin):
    plugin("strategy", "test_conv_text", ConvergedText)
    args = _search(tmp_path, "search:\n  strategy: test_conv_text\n  stop_when_converged: 0.9\n")
    line = _one_line(args, capsys)
    assert line.startswith(
        f"strategy plugin 'test_conv_text' ({IN_CODE}ConvergedText) returned 'yes' from "
        "converged(0.9), not True or False; "
    ), line
    assert not (tmp_path / "run" / "summary.json").exists()  # no untrained result written


@pytest.mark.parametrize(
    "returned, ok",
    [
        ("high", False),
        (1.5, False),
        (float("nan"), False),
        (True, False),
        (None, False),
        (np.float64(0.5), True),
        (1, True),
    ],
)
def test_a_strategys_convergence_must_be_a_number_in_0_to_1(plugin, returned, ok):
    class Returns(Uniform):
        def convergence(self):
            return returned

    plugin("strategy", "test_convergence", Returns)
    wrapped = CheckedStrategy(Returns([3, 4]), "test_convergence", [3, 4])
    if ok:
        assert wrapped.convergence() == float(returned)
        return
    with pytest.raises(PluginFailure) as e:
        wrapped.convergence()
    assert str(e.value).startswith("strategy plugin 'test_convergence' (")
    assert "from convergence(), not a number in 0..1" in str(e.value)


def test_a_converged_numpy_bool_is_taken(plugin):
    class NumpyBool(Uniform):
        def converged(self, fraction):
            return np.bool_(True)

    wrapped = CheckedStrategy(NumpyBool([3]), "test_np_bool", [3])
    assert wrapped.converged(0.9) is True


def _parts(strategy) -> dict:
    model = torch.nn.Linear(2, 2)
    return {
        "model": model,
        "optimizer": torch.optim.SGD(model.parameters(), lr=0.1),
        "strategy": strategy,
    }


def test_a_strategy_whose_load_state_dict_raises_is_named_on_resume(tmp_path, plugin):
    plugin("strategy", "test_load_raises", LoadRaises)
    RunState("search", "h", tmp_path, **_parts(LoadRaises([3]))).save()
    with pytest.raises(PluginFailure) as e:
        RunState("search", "h", tmp_path, **_parts(LoadRaises([3]))).resume()
    assert str(e.value).startswith(
        f"strategy plugin 'test_load_raises' ({IN_CODE}LoadRaises) failed in "
        f"LoadRaises.load_state_dict(state) restoring its strategy from "
        f"{tmp_path / 'checkpoint.pt'}: RuntimeError: acme: cannot restore (the state its own "
        "state_dict() returned, which it must load; if that file was edited or damaged, restore "
        f"it from a copy); {ADVICE}"
    ), str(e.value)
    assert isinstance(e.value.__cause__, RuntimeError)


def test_a_plugin_strategy_refusing_a_damaged_state_still_says_damaged(tmp_path, plugin):
    from nasframe.strategy_common import DamagedState

    class Refuses(Uniform):
        def load_state_dict(self, state):
            raise DamagedState("t is -1, below zero")

    plugin("strategy", "test_refuses", Refuses)
    RunState("search", "h", tmp_path, **_parts(Refuses([3]))).save()
    with pytest.raises(UserError, match=r"this checkpoint is damaged \(t is -1, below zero\)"):
        RunState("search", "h", tmp_path, **_parts(Refuses([3]))).resume()


# ------------------------------------------------------------------------------------- datasets
def _tensors(n: int = 8):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 1, 6, generator=g)
    y = torch.arange(n) % 3
    return x, y, x.clone(), y.clone()


def _dataset(**change):
    """A dataset factory returning good tensors with ``change`` made to the Dataset."""

    def factory(root=None, n_test: int = 8, n_train: int = 8, scale=1.0):
        x, y, xt, yt = _tensors()
        parts = {"x_train": x, "y_train": y, "x_test": xt, "y_test": yt, "num_classes": 3}
        parts.update(change)
        return Dataset("t", **parts)

    return factory


def _load(plugin, name: str, factory, **options):
    plugin("dataset", name, factory)
    return load_dataset(DataConfig(name=name, options=options))


@pytest.mark.parametrize(
    "change, said",
    [
        ({"num_classes": "3"}, "num_classes is '3', not an integer"),
        ({"num_classes": 3.0}, "num_classes is 3.0, not an integer"),
        ({"num_classes": 0}, "num_classes is 0; it must be at least 1 (the number of classes)"),
        (
            {"x_train": _tensors()[0].requires_grad_()},
            "x_train requires gradients (each training step would backpropagate into it); "
            "detach it (x.detach()) or make it under torch.no_grad()",
        ),
        (
            {"x_test": _tensors()[0] * torch.ones(1, requires_grad=True)},  # not a leaf
            "x_test requires gradients",
        ),
        (
            {"x_train": _tensors()[0].index_put_((torch.tensor([5]),), torch.tensor(float("nan")))},
            "x_train holds NaN or infinity (first in sample 5 of 8); a run would only diverge: "
            "replace or drop such samples",
        ),
        (
            {"x_test": _tensors()[0].index_put_((torch.tensor([2]),), torch.tensor(float("inf")))},
            "x_test holds NaN or infinity (first in sample 2 of 8)",
        ),
    ],
)
def test_a_dataset_no_run_can_train_on_is_the_plugins_failure(plugin, change, said):
    with pytest.raises(PluginFailure) as e:
        _load(plugin, "test_bad_data", _dataset(**change))
    assert str(e.value).startswith(
        f"dataset plugin 'test_bad_data' ({IN_CODE}_dataset.<locals>.factory) returned a "
        f"Dataset whose {said}"
    ), str(e.value)
    assert ADVICE in str(e.value)


def test_an_int_like_num_classes_is_taken_as_an_int(plugin):
    data = _load(plugin, "test_np_classes", _dataset(num_classes=np.int64(3)))
    assert data.num_classes == 3 and type(data.num_classes) is int


def test_a_non_finite_dataset_is_refused_by_validate_naming_it(tmp_path, capsys, plugin):
    x, y, xt, yt = _tensors(64)
    x[7, 0, 2] = float("nan")

    def has_nan(root=None):
        return Dataset("t", x.reshape(64, 6), y, xt.reshape(64, 6), yt, 3)

    plugin("dataset", "test_has_nan", has_nan)
    text = (SPACES / "mlp.yaml").read_text()
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text.replace("data: {name: digits,", "data: {name: test_has_nan,"))
    line = _one_line(["validate", "--data", str(cfg)], capsys)
    assert f"dataset plugin 'test_has_nan' ({IN_CODE}" in line, line
    assert "x_train holds NaN or infinity (first in sample 7 of 64)" in line


def test_an_empty_split_without_options_is_the_plugins_failure(plugin):
    x, y, _, _ = _tensors()
    with pytest.raises(PluginFailure) as e:
        _load(plugin, "test_empty", _dataset(x_test=x[:0], y_test=y[:0]))
    assert str(e.value).startswith(
        f"dataset plugin 'test_empty' ({IN_CODE}_dataset.<locals>.factory) returned a Dataset "
        "with an empty test split (x_test has no samples), with no data.options given; "
    ), str(e.value)


def test_an_empty_split_the_users_option_asked_for_is_located_there(plugin):
    def sized(root=None, n_test: int = 8):
        x, y, xt, yt = _tensors()
        return Dataset("t", x, y, xt[:n_test], yt[:n_test], 3)

    with pytest.raises(UserError) as e:
        _load(plugin, "test_sized", sized, n_test=0)
    assert not isinstance(e.value, PluginFailure)
    assert str(e.value) == (
        "data.options.n_test: dataset 'test_sized' gave an empty test split with n_test=0; ask "
        "it for at least 1 test sample"
    )


# ------------------------------------------------------------------------------ option values
def waves(root=None, n_train: int = 800, level: float = 0.5, noisy: bool = False, scale=0.1):
    """A dataset plugin with annotated and defaulted options."""
    x, y, xt, yt = _tensors()
    return Dataset("w", x, y, xt, yt, 3)


@pytest.mark.parametrize(
    "key, value, said",
    [
        ("n_train", "abc", "expected a whole number, got the text 'abc'"),
        ("n_train", 100.5, "expected a whole number, got the number 100.5"),
        ("n_train", True, "expected a whole number, got the boolean true"),
        ("n_train", "100", "expected a whole number, got the text '100'; write 100 without quotes"),
        ("level", "abc", "expected a number, got the text 'abc'"),
        ("level", [1], "expected a number, got a list"),
        ("noisy", 1, "expected true or false, got the number 1; write true"),
        ("scale", "0.5", "expected a number, got the text '0.5'; write 0.5 without quotes"),
    ],
)
def test_a_wrong_dataset_option_value_is_the_users_at_its_key(plugin, key, value, said):
    with pytest.raises(UserError) as e:
        _load(plugin, "test_waves", waves, **{key: value})
    assert not isinstance(e.value, PluginFailure)
    assert str(e.value) == f"data.options.{key}: {said}"


def test_a_wrong_dataset_option_value_is_located_on_the_command_line(tmp_path, capsys, plugin):
    plugin("dataset", "test_waves", waves)
    text = (SPACES / "mlp.yaml").read_text()
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text.replace("data: {name: digits,", "data: {name: test_waves,"))
    line = _one_line(["validate", "--data", str(cfg), "--set", "data.options.n_train=abc"], capsys)
    assert line == (
        "--set data.options.n_train=abc: data.options.n_train: expected a whole number, got the "
        "text 'abc'"
    )


def test_right_dataset_option_values_reach_the_plugin(plugin):
    seen = {}

    def records(root=None, n_train: int = 800, level: float = 0.5, scale=0, mode="auto"):
        seen.update(n_train=n_train, level=level, scale=scale, mode=mode)
        return waves()

    _load(plugin, "test_records", records, n_train=1e3, level=1, scale=0.25, mode=4)
    assert seen == {"n_train": 1000, "level": 1, "scale": 0.25, "mode": 4}
    assert type(seen["n_train"]) is int  # 1e3 as YAML 1.2 reads it: a whole number


def test_unannotated_options_take_what_research_code_passes_and_numpy_scalars_fit(plugin):
    """An option without an annotation is the plugin's to judge (None for off, a list, a word
    where its default is a number); only a number quoted by mistake is refused. NumPy scalars
    (a config built in Python) fit annotated options."""
    seen = {}

    def loose(root=None, n: int = 20, frac: float = 0.5, flag: bool = False, sigma=0.1):
        seen.update(n=n, frac=frac, flag=flag, sigma=sigma)
        return waves()

    for sigma in (None, [0.1, 0.2], "auto", True):
        _load(plugin, "test_loose", loose, sigma=sigma)
        assert seen["sigma"] == sigma
    _load(plugin, "test_loose", loose, n=np.int64(20), frac=np.float32(0.25), flag=np.True_)
    assert (seen["n"], seen["frac"], seen["flag"]) == (20, 0.25, True)


def test_strategy_option_kinds_follow_the_constructors_signature():
    options = {"lr": "abc"}
    with pytest.raises(UserError, match=r"^search\.strategy_options\.lr: expected a number, got "):
        checked_options(Uniform, options, "search.strategy_options")
    with pytest.raises(UserError, match=r"^search\.strategy_options\.rows: expected a whole"):
        checked_options(Uniform, {"rows": 2.5}, "search.strategy_options")
    assert checked_options(Uniform, {"lr": 1, "rows": 2.0}, "x") == {"lr": 1, "rows": 2}


def test_a_wrong_strategy_option_value_is_the_users_at_its_key(tmp_path, capsys, plugin):
    """Needs make_strategy (nasframe/search.py) to call checked_options."""
    plugin("strategy", "test_uniform", Uniform)
    search = "search:\n  strategy: test_uniform\n  strategy_options: {lr: abc}\n"
    line = _one_line(_search(tmp_path, search), capsys)
    assert line.endswith("search.strategy_options.lr: expected a number, got the text 'abc'"), line
