"""nutpie callbacks built from cacheable source (bayesmix._nutpie_numba)."""

import ctypes
import os

import numpy as np
import pymc as pm
import pytest

from bayesmix._nutpie_numba import compile_pymc_model


@pytest.fixture(scope="module")
def model():
    # Shared data of rank 2, 1 and 0, and a deterministic for the expand callback.
    rng = np.random.default_rng(0)
    with pm.Model() as model:
        X = pm.Data("X", rng.normal(size=(20, 2)))
        weight = pm.Data("weight", np.ones(20))
        prior_scale = pm.Data("prior_scale", 3.0)
        mu = pm.Normal("mu", 0.0, prior_scale, shape=2)
        sd = pm.HalfNormal("sd", 1.0)
        pm.Deterministic("mu_sum", mu.sum())
        pm.Potential("loglik", (weight * pm.logp(pm.Normal.dist(mu, sd), X).sum(-1)).sum())
    return model


def _pointer(array):
    return array.ctypes.data_as(ctypes.POINTER(ctypes.c_double))


def _call_logp(compiled, x):
    grad, logp = np.zeros_like(x), np.zeros(())
    code = compiled.compiled_logp_func.ctypes(
        x.size, _pointer(x), _pointer(grad), _pointer(logp), compiled.user_data.ctypes.data
    )
    return code, float(logp), grad


def _call_expand(compiled, x):
    out = np.zeros(compiled.n_expanded)
    code = compiled.compiled_expand_func.ctypes(
        x.size, out.size, _pointer(x), _pointer(out), compiled.user_data.ctypes.data
    )
    return code, out


def _reference(compiled, x, data):
    """The PyTensor functions' own values with the shared variables set to ``data``."""
    shared = {
        var.name: var
        for function in (compiled.logp_func, compiled.expand_func)
        for var in function.get_shared()
    }
    saved = {name: var.get_value() for name, var in shared.items()}
    try:
        for name, value in data.items():
            shared[name].set_value(np.asarray(value, dtype=saved[name].dtype))
        logp, grad = compiled.logp_func(x)
        (expanded,) = compiled.expand_func(x)
    finally:
        for name, value in saved.items():
            shared[name].set_value(value)
    return float(logp), grad, expanded


def test_callbacks_read_swapped_data(model):
    compiled = compile_pymc_model(model, initial_points={})
    rng = np.random.default_rng(1)
    new_data = {"X": rng.normal(2.0, 1.0, size=(35, 2)), "weight": rng.uniform(size=35), "prior_scale": 0.5}
    swapped = compiled.with_data(**new_data)
    x = rng.normal(size=compiled.n_dim)

    code, logp, grad = _call_logp(swapped, x)
    expected_logp, expected_grad, expected_expanded = _reference(compiled, x, new_data)
    assert code == 0
    np.testing.assert_allclose(logp, expected_logp, rtol=1e-12)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-12)
    code, expanded = _call_expand(swapped, x)
    assert code == 0
    np.testing.assert_allclose(expanded, expected_expanded, rtol=1e-12)
    # The unswapped model still reads its own data.
    assert _call_logp(compiled, x)[1] != pytest.approx(logp)


def test_non_finite_log_density_is_reported_not_raised(model):
    compiled = compile_pymc_model(model, initial_points={})
    x = np.array([np.inf, 0.0, 0.0])
    assert _call_logp(compiled, x)[0] != 0


def test_second_compilation_loads_the_callbacks_from_disk(model, monkeypatch):
    import numba

    first = compile_pymc_model(model, initial_points={})

    def compile_again(*args, **kwargs):
        raise AssertionError("compiled a callback again")

    monkeypatch.setattr(numba, "cfunc", compile_again)
    again = compile_pymc_model(model, initial_points={})
    x = np.array([0.3, -0.2, 0.1])
    (code, logp, grad), (code_again, logp_again, grad_again) = _call_logp(first, x), _call_logp(again, x)
    assert (code, logp) == (code_again, logp_again) and np.array_equal(grad, grad_again)


def test_an_error_in_the_log_density_is_a_point_the_sampler_cannot_use():
    # The callback has no try/except (it would cost 20 s of compiling): numba reports the
    # exception and returns 0, so the NaN outputs set beforehand must reach nutpie.
    from pytensor.raise_op import Assert
    import pytensor.tensor as pt

    with pm.Model() as model:
        x = pm.Normal("x")
        pm.Potential("p", Assert("x too large")(pt.zeros(()), x < 0.5))
    compiled = compile_pymc_model(model, initial_points={})
    code, logp, grad = _call_logp(compiled, np.array([0.7]))
    assert code == 0 and np.isnan(logp) and np.all(np.isnan(grad))
    assert _call_logp(compiled, np.array([0.2]))[:2] == (0, pytest.approx(-0.5 * 0.04 - 0.5 * np.log(2 * np.pi)))


def test_digamma_is_compiled_and_cacheable_for_numba():
    # PyTensor's own numba digamma calls back into Python and cannot be cached, so every
    # model with a Student-t, Gamma or Beta shape parameter compiled in every process.
    import pytensor
    import pytensor.tensor as pt
    import scipy.special
    from pytensor.link.numba.cache import CACHED_SRC_FUNCTIONS

    import bayesmix._nutpie_numba  # noqa: F401 (registers the digamma)

    x = pt.dvector("x")
    function = pytensor.function([x], pt.psi(x), mode="NUMBA")
    values = np.r_[np.geomspace(1e-6, 1e6, 50), -2.5, -0.3]
    np.testing.assert_allclose(function(values), scipy.special.psi(values), rtol=1e-13)
    assert CACHED_SRC_FUNCTIONS.get(function.vm.jit_fn.py_func) is not None


def test_the_callbacks_disk_key_is_the_same_in_every_process():
    # PyTensor's key of the rewritten regression graph changed with the process (the
    # order of elementwise fusion); the key of the callbacks on disk must not.
    import os
    import subprocess
    import sys

    code = (
        "from bayesmix.models.regression import build_regression_mixture;"
        "from bayesmix._nutpie_numba import _model_cache_key;"
        "print(_model_cache_key(build_regression_mixture(2, 1, gating=True)))"
    )
    keys = set()
    for seed in ("1", "2"):
        env = os.environ | {"PYTHONHASHSEED": seed}
        result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        keys.add(result.stdout.strip().splitlines()[-1])
    assert len(keys) == 1


def _estimators_and_data():
    from sklearn.datasets import make_blobs

    from bayesmix import BayesianGaussianMixture, BayesianMixtureRegression

    X1 = make_blobs(60, n_features=1, centers=2, random_state=0)[0]
    X2 = make_blobs(60, n_features=2, centers=2, random_state=0)[0]
    x = np.linspace(-1, 1, 60)[:, None]
    y = np.where(np.arange(60) % 2, 1 + 2 * x[:, 0], -1 - x[:, 0]) + 0.1 * np.cos(np.arange(60))
    counts = np.where(np.arange(60) % 2, 1, 8) + np.arange(60) % 3
    return [
        (BayesianGaussianMixture(2), X1, None),
        (BayesianGaussianMixture(2, covariance_type="diag"), X2, None),
        (BayesianGaussianMixture(2, covariance_type="full"), X2, None),
        (BayesianMixtureRegression(2), x, y),
        (BayesianMixtureRegression(2, family="poisson"), x, counts),
        (BayesianMixtureRegression(2, gating=True), x, y),
    ]


@pytest.mark.parametrize("index", range(6))
def test_post_fit_functions_name_what_fit_runs_after_sampling(index, monkeypatch):
    # A compile helper compiles these for the argument types given: a call with other
    # types (another layout, another dimension) would be compiled again in ``fit``.
    import importlib
    import types

    import numba
    from conftest import FAST_JAX
    from numba.core import sigutils
    from numba.core.registry import CPUDispatcher

    from bayesmix import _sampling

    estimator, X, y = _estimators_and_data()[index]
    estimator.set_params(**FAST_JAX)  # the post-fit functions run on either backend
    method = estimator.relabel if estimator.relabel != "auto" else estimator._auto_relabel(X.shape[1])
    listed = {
        path: {tuple(sigutils.normalize_signature(types_)[0])}
        for path, types_ in estimator._post_fit_functions(X.shape[1], method)
    }
    calls, sampled = {}, []
    sample = _sampling.sample

    def sample_then_record(*args, **kwargs):
        result = sample(*args, **kwargs)
        sampled.append(True)
        return result

    class recording:  # a dispatcher that records its calls' argument types after sampling
        def __init__(self, function):
            self.function = function
            self.path = f"{function.py_func.__module__}:{function.py_func.__name__}"

        def record(self, argument_types):
            if sampled:
                calls.setdefault(self.path, set()).add(tuple(argument_types))

        def __call__(self, *args):
            self.record(numba.typeof(arg) for arg in args)
            return self.function(*args)

        def compile(self, signature):  # ``models.kernels.for_family``'s calls
            entry = self.function.compile(signature)

            def call(*args):
                self.record(signature)
                return entry(*args)

            return call

    monkeypatch.setattr(_sampling, "sample", sample_then_record)
    # Wrapped where the estimators' Python code finds them, never where numba code does.
    for caller in ("_base", "gaussian", "regression", "marginal", "relabel"):
        module = importlib.import_module(f"bayesmix.{caller}")
        for name, value in list(vars(module).items()):
            if isinstance(value, CPUDispatcher):
                monkeypatch.setattr(module, name, recording(value))
            elif isinstance(value, types.ModuleType) and value.__name__.startswith("bayesmix.models."):
                proxy = types.SimpleNamespace(**vars(value))
                for inner, function in vars(value).items():
                    if isinstance(function, CPUDispatcher):
                        setattr(proxy, inner, recording(function))
                monkeypatch.setattr(module, name, proxy)
    estimator.fit(X, y)
    assert calls == listed


def test_a_first_fit_has_a_helper_compile_the_expand_callback_and_the_post_fit_functions(tmp_path):
    # On empty caches this process compiles the log-density callback only: the expand
    # callback and what ``fit`` runs after sampling come from the helper, through the cache.
    import os
    import subprocess
    import sys

    code = """
import numba, numpy as np
from sklearn.datasets import make_blobs
from bayesmix import BayesianGaussianMixture
from bayesmix._nutpie_numba import _resolve
compiled = []
cfunc = numba.cfunc
numba.cfunc = lambda signature, **kw: compiled.append(signature) or cfunc(signature, **kw)
X = make_blobs(200, n_features=2, centers=2, random_state=0)[0]
estimator = BayesianGaussianMixture(2, covariance_type="diag", draws=50, tune=50, chains=2, random_state=0).fit(X)
print(len(compiled))
for path, _ in estimator._post_fit_functions(2, "stephens"):
    stats = _resolve(path).stats
    print(path, sum(stats.cache_hits.values()), sum(stats.cache_misses.values()))
"""
    env = os.environ | {
        "PYTENSOR_FLAGS": f"base_compiledir={tmp_path / 'pytensor'}",
        "NUMBA_CACHE_DIR": str(tmp_path / "numba"),
    }
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "1"  # the log-density callback
    assert len(lines) == 4  # row log-likelihood, responsibilities, relabeling's confidence
    for line in lines[1:]:
        path, hits, misses = line.split()
        assert (int(hits), int(misses)) == (1, 0), line


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_ctrl_c_dropped_inside_a_ctypes_callback_still_interrupts():
    # numba's compiler calls Python from LLVM through ctypes, and Python prints and drops
    # an exception raised in such a callback: in CI a Ctrl-C during a first compile was
    # lost there and the fit went on.
    import ctypes
    import signal

    from bayesmix import _sampling

    def callback():
        signal.raise_signal(signal.SIGINT)  # its handler runs here, inside the callback
        return 0

    c_callback = ctypes.CFUNCTYPE(ctypes.c_int)(callback)
    # As in a terminal, whatever the test runner's process was given (a shell's
    # background job ignores SIGINT).
    handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    mask = signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    try:
        went_on = []
        with pytest.raises(KeyboardInterrupt):
            with _sampling._interrupts_kept():
                c_callback()
                went_on.append(True)
        assert went_on == [True]  # dropped in the callback, raised after the block
        # numba then failed on: the error it raised gives way to the KeyboardInterrupt.
        with pytest.raises(KeyboardInterrupt) as raised:
            with _sampling._interrupts_kept():
                c_callback()
                raise RuntimeError("no compiled object yet")
        assert isinstance(raised.value.__cause__, RuntimeError)
        with pytest.raises(RuntimeError):  # other errors stay themselves
            with _sampling._interrupts_kept():
                raise RuntimeError("no compiled object yet")
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        signal.signal(signal.SIGINT, handler)


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="reads the process table from /proc")
def test_ctrl_c_during_a_first_compile_stops_the_helper_too(tmp_path):
    import subprocess
    import sys

    code = """
import os, signal, threading, time
signal.signal(signal.SIGINT, signal.default_int_handler)
import numpy as np
from bayesmix import BayesianGaussianMixture
from bayesmix import _nutpie_numba

started = []
start = _nutpie_numba._CompileHelper.start.__func__
def start_and_interrupt(cls, *args):
    helper = start(cls, *args)
    started.append(helper)
    threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGINT)).start()  # while compiling
    return helper
_nutpie_numba._CompileHelper.start = classmethod(start_and_interrupt)
X = np.random.default_rng(0).normal(size=(100, 2))
try:
    BayesianGaussianMixture(2, covariance_type="diag", draws=20, tune=20, random_state=0).fit(X)
    print("returned")
except KeyboardInterrupt:
    print("interrupted")
children = [p for p in os.listdir("/proc") if p.isdigit() and open(f"/proc/{p}/stat").read().split(")")[-1].split()[1] == str(os.getpid())]
print(len(started), started[0].process.poll() is not None, len(children))
"""
    env = os.environ | {
        "PYTENSOR_FLAGS": f"base_compiledir={tmp_path / 'pytensor'}",
        "NUMBA_CACHE_DIR": str(tmp_path / "numba"),
    }
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert result.stdout.split() == ["interrupted", "1", "True", "0"], result.stdout + result.stderr[-2000:]


def test_a_helper_that_finds_another_installation_compiles_nothing(tmp_path):
    # A helper that imported other bayesmix code would file its machine code under this
    # installation's keys.
    import json
    import subprocess
    import sys

    orders = {"installation": "another", "callbacks": [["def f():\n    return 0\n", "expand", {}, "key"]], "functions": []}
    env = os.environ | {"NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    result = subprocess.run(
        [sys.executable, "-c", "import bayesmix._nutpie_numba as m; m._helper_main()"],
        input=json.dumps(orders), env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1 and result.stdout == "", result.stderr[-2000:]
    assert not list(tmp_path.rglob("*.nbi"))


def test_full_covariance_callbacks_are_the_same_for_every_k(monkeypatch):
    # One compile per machine for every K: the expand callback once copied each factor
    # (chol_0, chol_1, ...) on its own, so its source, and a 2-3 s compile, came with K.
    from bayesmix import _nutpie_numba
    from bayesmix.models.gaussian import build_gaussian_mixture
    from bayesmix.models.kernels import FullCovarianceKernel, _full_expand

    sources, compiled = {}, {}
    callback_function = _nutpie_numba._callback_function
    for K in (2, 3):
        monkeypatch.setattr(
            _nutpie_numba,
            "_callback_function",
            lambda source, *args, K=K: sources.setdefault(K, set()).add(source) or callback_function(source, *args),
        )
        model = build_gaussian_mixture(K, 2, "full", False)
        compiled[K] = compile_pymc_model(model, initial_points={}, kernel=FullCovarianceKernel())
    assert len(sources[2]) == 2 and sources[2] == sources[3]  # log-density and expand, the same
    # What the callback writes is the trace: the point, weights, each factor's rows, covariances.
    x = np.random.default_rng(1).normal(size=compiled[3].n_dim)
    code, out = _call_expand(compiled[3], x)
    weights, _, rows, covariances = _full_expand(x, 0, 0, 2.0, 0, np.zeros((1, 2)))
    assert code == 0
    np.testing.assert_array_equal(out, np.concatenate([x, weights, rows.ravel(), covariances.ravel()]))
