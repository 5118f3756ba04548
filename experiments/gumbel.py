r"""Seed 001: Gumbel-Max sampling, the Gumbel-Softmax bias/variance trade-off, a categorical VAE.

    python -m experiments.gumbel --output_dir=results/gumbel [--quick] [--overwrite]

Three parts, each with the exact quantity beside the Monte Carlo one:

(a) Gumbel-Max. Seed 001 proves argmax_i (log p_i − log(−log ε_i)), ε_i ~ U[0, 1], equals i with
    probability p_i. We draw N samples for a K-class categorical and compare the frequencies with
    p by Pearson's χ² test (K − 1 degrees of freedom).

(b) Bias and variance against τ. For the fixed categorical problem
    f(y) = (y·v − c)², y one-hot, q = softmax(θ), the exact gradient is by enumeration
    g* = ∇θ Σ_k q_k f(e_k). For Gumbel-Softmax (f at y_soft = softmax((θ + g)/τ)), straight-through
    (f at y_hard − sg(y_soft) + y_soft) and the score function with a leave-one-out baseline we
    report the relative bias ‖E ĝ − g*‖/‖g*‖ (with a delta-method standard error and the noise
    floor sqrt(Σ_j se_j²)/‖g*‖ an unbiased estimator would show) and the per-sample total
    variance tr Var ĝ, over a log grid of τ. Seed 001's claim: τ trades bias for variance
    (small τ → near one-hot samples, little bias, large variance); the score function is unbiased.

(c) Categorical VAE on scikit-learn's 8×8 digits (binarized): L latent variables with K classes,
    q(z|x) = Π_l Cat(softmax(enc(x)_l)), uniform prior, Bernoulli decoder. The ELBO
    E_q[log p(x|z)] − KL(q‖uniform) has an analytic KL = Σ_l Σ_k q_lk log(K q_lk); its first term
    is the estimator's job, through gradest's surrogate contract (the encoder's logits build the
    distribution, the decoder log-likelihood is f). Trained with Gumbel-Softmax annealed from
    τ = 1 (seed 001), straight-through, and the score function with a leave-one-out baseline, each
    using the same number of latent draws per data point. The held-out ELBO is always the true
    discrete one (exact categorical samples). Exact reference: the best ELBO of a model that
    ignores its latent code, the cross-entropy of the test pixels under the training pixel means.
"""

from __future__ import annotations

import dataclasses
import math
import time

from absl import app, flags
import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
import scipy.special
import scipy.stats
from sklearn.datasets import load_digits

import gradest
from gradest import baselines
from experiments import _common

# --------------------------------------------------------------------------------------------
# Sizes.


size = _common.size_field


@dataclasses.dataclass(frozen=True)
class Sizes:
    """Budget knobs; ``run(..., **sizes)`` and the same-named flags override them."""

    num_classes: int = size(8, "K of the Gumbel-Max categorical in (a) and of the problem in (b).")
    num_draws: int = size(1_000_000, "Gumbel-Max draws in (a).")
    num_temperatures: int = size(13, "Points of the log grid of τ in [0.1, 5] in (b).")
    grad_samples: int = size(200_000, "Per-sample gradients per estimator and τ in (b).")
    loo_samples: int = size(4, "Draws per leave-one-out group in (b); draws per data point in (c).")
    latent_vars: int = size(16, "Categorical latent variables of the VAE in (c).")
    latent_classes: int = size(10, "Classes of each latent variable in (c).")
    hidden: int = size(256, "Width of the encoder's and decoder's hidden layer in (c).")
    train_steps: int = size(20_000, "Adam steps per estimator in (c).")
    batch_size: int = size(64, "Data points per training step in (c).")
    eval_every: int = size(1_000, "Training steps between held-out ELBO evaluations in (c).")
    eval_samples: int = size(64, "Exact latent draws per held-out digit in an evaluation in (c).")


QUICK = Sizes(num_draws=100_000, num_temperatures=9, grad_samples=20_000, latent_vars=8,
              hidden=64, train_steps=3_000, eval_every=300, eval_samples=16)
FULL = Sizes()

TEMPERATURE_RANGE = (0.1, 5.0)   # the log grid of τ in (b)
LEARNING_RATE = 1e-3
TAU_FLOOR = 0.5                  # annealing floor of Jang et al. (2017)
TEST_FRACTION = 0.2


# --------------------------------------------------------------------------------------------
# (a) Gumbel-Max frequencies.


def gumbel_max_logits(num_classes: int) -> jax.Array:
    """Unequal class probabilities (from 0.03 to 0.3 for K = 8) so every class is tested."""
    return jnp.linspace(1.2, -1.2, num_classes)


def gumbel_max_counts(key: jax.Array, logits: jax.Array, num_draws: int) -> jax.Array:
    """Class counts of ``num_draws`` Gumbel-Max samples of Categorical(softmax(logits))."""
    draws = gradest.gumbel_max_sample(key, jnp.broadcast_to(logits, (num_draws,) + logits.shape))
    return jnp.bincount(draws, length=logits.shape[-1])


def gumbel_max_experiment(key: jax.Array, sizes: Sizes) -> dict:
    logits = gumbel_max_logits(sizes.num_classes)
    # In float64 and renormalized: χ² needs Σ expected = Σ observed to ~1e-8.
    probs = scipy.special.softmax(np.asarray(logits, np.float64))
    counts = np.asarray(gumbel_max_counts(key, logits, sizes.num_draws), np.float64)
    n = sizes.num_draws
    chi2, p_value = scipy.stats.chisquare(counts, n * probs)
    freq = counts / n
    # Binomial standard error of each frequency under the null.
    z = (freq - probs) / np.sqrt(probs * (1.0 - probs) / n)
    return {"num_draws": n, "probs": probs, "frequencies": freq, "zscores": z,
            "chi2": float(chi2), "dof": sizes.num_classes - 1, "p_value": float(p_value)}


def plot_gumbel_max(res: dict, path) -> None:
    k = len(res["probs"])
    fig, ax = plt.subplots(figsize=(6, 3.5))
    idx = np.arange(k)
    ax.bar(idx - 0.2, res["probs"], 0.4, label="exact p")
    ax.bar(idx + 0.2, res["frequencies"], 0.4, label=f"Gumbel-Max, N={res['num_draws']:,}")
    ax.set_xlabel("class")
    ax.set_ylabel("probability")
    ax.set_title(f"Gumbel-Max vs exact: χ²={res['chi2']:.1f} (dof {res['dof']}), "
                 f"p={res['p_value']:.2f}")
    ax.legend()
    _common.save_figure(fig, path)


# --------------------------------------------------------------------------------------------
# (b) Bias and variance against the temperature.

_CAT_C = 0.5


def _cat_values(num_classes: int) -> jax.Array:
    return jnp.linspace(-1.0, 2.0, num_classes)


def cat_dist(params):
    return distrax.OneHotCategorical(logits=params["logits"], dtype=jnp.float32)


def cat_objective(params, y):
    """f(y) = (y·v − c)²: nonlinear in the one-hot y, so the relaxation's bias is not trivial."""
    del params
    v = _cat_values(y.shape[-1])
    return (jnp.dot(y, v) - _CAT_C) ** 2


def cat_params(num_classes: int) -> dict:
    return {"logits": jnp.linspace(0.5, -0.5, num_classes)}


def exact_value_and_grad(params: dict) -> tuple[jax.Array, dict]:
    """E_q[f] = Σ_k q_k f(e_k) and its gradient, by enumeration over the K classes."""
    k = params["logits"].shape[-1]

    def expectation(p):
        q = jax.nn.softmax(p["logits"])
        return jnp.dot(q, jax.vmap(lambda e: cat_objective(p, e))(jnp.eye(k)))

    return jax.value_and_grad(expectation)(params)


def bias_variance(estimator, key, params, exact_grad, num_samples: int, state=None) -> dict:
    """Relative bias (with standard error and noise floor) and total variance of one estimator.

    With b̂ = ĝ − g* and se_j the standard error of ĝ_j, the delta method gives
    se(‖b̂‖) ≈ sqrt(Σ_j (b̂_j/‖b̂‖)² se_j²); an unbiased estimator shows ‖b̂‖ ≈ sqrt(Σ_j se_j²),
    the noise floor.
    """
    est = gradest.estimate_grad(estimator, key, params, cat_dist, cat_objective, num_samples,
                                state=state, exact=exact_grad, with_value=True)
    bias = est.comparison.bias["logits"]
    se = est.diagnostics.stderr["logits"]
    g_norm = jnp.linalg.norm(exact_grad["logits"])
    b_norm = jnp.linalg.norm(bias)
    return {
        "relative_bias": float(b_norm / g_norm),
        "relative_bias_se": float(jnp.sqrt(jnp.sum((bias / b_norm) ** 2 * se**2)) / g_norm),
        "noise_floor": float(jnp.sqrt(jnp.sum(se**2)) / g_norm),
        "max_abs_zscore": float(est.comparison.max_abs_zscore),
        "total_variance": float(est.diagnostics.total_variance),
        "value": float(est.value),
    }


def bias_variance_experiment(key: jax.Array, sizes: Sizes, log: _common.Progress) -> dict:
    params = cat_params(sizes.num_classes)
    exact_value, exact_grad = exact_value_and_grad(params)
    temperatures = np.geomspace(*TEMPERATURE_RANGE, sizes.num_temperatures)
    key_sf, key_gs, key_st = jax.random.split(key, 3)
    sf = bias_variance(gradest.score_function(baselines.leave_one_out(sizes.loo_samples)),
                       key_sf, params, exact_grad, sizes.grad_samples)
    sf["draws_per_sample"] = sizes.loo_samples
    out = {"temperatures": temperatures, "exact_value": float(exact_value),
           "exact_grad": exact_grad["logits"], "score_function": sf}
    # τ as a schedule indexed by the estimator state's step: the state is a traced argument of
    # estimate_grad, so the whole grid runs on one compilation per estimator.
    grid = jnp.asarray(temperatures, jnp.float32)
    for name, hard, k in (("gumbel_softmax", False, key_gs), ("straight_through", True, key_st)):
        estimator = gradest.gumbel_softmax(lambda step: grid[step], hard=hard)
        rows = [bias_variance(estimator, kk, params, exact_grad, sizes.grad_samples,
                              state=gradest.gumbel.GumbelState(jnp.asarray(i, jnp.int32)))
                for i, kk in enumerate(jax.random.split(k, len(temperatures)))]
        out[name] = {field: [r[field] for r in rows] for field in rows[0]}
        log(f"(b) {name}: relative bias {rows[0]['relative_bias']:.3f} at τ={temperatures[0]:.2f}"
            f" .. {rows[-1]['relative_bias']:.3f} at τ={temperatures[-1]:.2f}")
    return out


def plot_bias_variance(res: dict, path) -> None:
    taus = res["temperatures"]
    sf = res["score_function"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, field, title in ((axes[0], "relative_bias", "relative bias ‖E ĝ − g*‖ / ‖g*‖"),
                             (axes[1], "total_variance", "per-sample total variance tr Var ĝ")):
        for name, label in (("gumbel_softmax", "Gumbel-Softmax"),
                            ("straight_through", "straight-through")):
            y = np.asarray(res[name][field])
            if field == "relative_bias":
                ax.errorbar(taus, y, yerr=2 * np.asarray(res[name]["relative_bias_se"]),
                            marker="o", capsize=2, label=label)
            else:
                ax.plot(taus, y, marker="o", label=label)
        ax.axhline(sf[field], color="k", ls="--",
                   label=f"score function, LOO K={sf['draws_per_sample']}")
        if field == "relative_bias":
            ax.axhline(sf["noise_floor"], color="gray", ls=":", label="score-function noise floor")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("temperature τ")
        ax.set_title(title)
        ax.legend(fontsize=8)
    _common.save_figure(fig, path)


# --------------------------------------------------------------------------------------------
# (c) Categorical VAE on digits.


def load_binary_digits(key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """scikit-learn's 8×8 digits scaled to [0, 1] and binarized at 1/2; a random held-out split."""
    x = (load_digits().data / 16.0 > 0.5).astype(np.float32)
    perm = np.asarray(jax.random.permutation(key, x.shape[0]))
    n_test = int(TEST_FRACTION * x.shape[0])
    return jnp.asarray(x[perm[n_test:]]), jnp.asarray(x[perm[:n_test]])


class Encoder(nn.Module):
    latent_vars: int
    latent_classes: int
    hidden: int

    @nn.compact
    def __call__(self, x):
        h = nn.relu(nn.Dense(self.hidden)(x))
        return nn.Dense(self.latent_vars * self.latent_classes)(h).reshape(
            self.latent_vars, self.latent_classes)


class Decoder(nn.Module):
    pixels: int
    hidden: int

    @nn.compact
    def __call__(self, z):
        h = nn.relu(nn.Dense(self.hidden)(z.reshape(-1)))
        return nn.Dense(self.pixels)(h)


@dataclasses.dataclass(frozen=True)
class VAE:
    encoder: Encoder
    decoder: Decoder

    def init(self, key: jax.Array, pixels: int) -> dict:
        k_enc, k_dec = jax.random.split(key)
        z = jnp.zeros((self.encoder.latent_vars, self.encoder.latent_classes))
        return {"encoder": self.encoder.init(k_enc, jnp.zeros(pixels)),
                "decoder": self.decoder.init(k_dec, z)}

    def posterior(self, params: dict, x: jax.Array) -> distrax.OneHotCategorical:
        """q(z|x): L independent categoricals; one-hot samples so every estimator shares f."""
        return distrax.OneHotCategorical(logits=self.encoder.apply(params["encoder"], x),
                                         dtype=jnp.float32)

    def log_likelihood(self, params: dict, x: jax.Array, z: jax.Array) -> jax.Array:
        """log p(x|z) = Σ_d x_d log σ(l_d) + (1 − x_d) log σ(−l_d), l = dec(z)."""
        logits = self.decoder.apply(params["decoder"], z)
        return -jnp.sum(optax.sigmoid_binary_cross_entropy(logits, x))


def kl_to_uniform(logits: jax.Array) -> jax.Array:
    """KL(Π_l Cat(q_l) ‖ uniform over K classes) = Σ_l Σ_k q_lk log(K q_lk), exactly."""
    log_q = jax.nn.log_softmax(logits, axis=-1)
    return jnp.sum(jnp.exp(log_q) * (log_q + math.log(logits.shape[-1])))


def elbo_surrogate(model: VAE, estimator, params, state, key, x, num_calls: int):
    """Per-datum ELBO surrogate: the estimator's surrogate for E_q[log p(x|z)], averaged over
    ``num_calls`` calls, minus the analytic KL (differentiated exactly)."""

    def make_dist(p):
        return model.posterior(p, x)

    def f(p, z):
        return model.log_likelihood(p, x, z)

    values, aux = jax.vmap(estimator.surrogate, in_axes=(0, None, None, None, None))(
        jax.random.split(key, num_calls), params, make_dist, f, state)
    kl = kl_to_uniform(make_dist(params).logits)
    return jnp.mean(values) - kl, aux


def discrete_elbo(model: VAE, params, key, x, num_samples: int) -> jax.Array:
    """Per-datum Monte Carlo ELBO with exact categorical samples (the true, unrelaxed ELBO)."""
    dist = model.posterior(params, x)
    z = dist.sample(seed=key, sample_shape=num_samples)
    ll = jax.vmap(lambda zi: model.log_likelihood(params, x, zi))(z)
    return jnp.mean(ll) - kl_to_uniform(dist.logits)


def marginal_elbo(x_train: jax.Array, x_test: jax.Array) -> float:
    """Exact best held-out ELBO of a decoder that ignores z (KL = 0): the mean log-likelihood of
    the test pixels under independent Bernoullis with the training pixel means."""
    m = jnp.clip(jnp.mean(x_train, axis=0), 1e-3, 1 - 1e-3)
    return float(jnp.mean(jnp.sum(x_test * jnp.log(m)[None] + (1 - x_test) * jnp.log1p(-m)[None],
                                  axis=1)))


def vae_estimators(sizes: Sizes) -> dict:
    """The three estimators of (c). τ is annealed from 1 to the floor over the first half."""
    rate = math.log(1.0 / TAU_FLOOR) / (0.5 * sizes.train_steps)
    anneal = gradest.exponential_anneal(init=1.0, rate=rate, floor=TAU_FLOOR)
    return {
        "gumbel_softmax": gradest.gumbel_softmax(anneal),
        "straight_through": gradest.straight_through(anneal),
        "score_function": gradest.score_function(baselines.leave_one_out(sizes.loo_samples)),
    }


def make_vae_trainer(model: VAE, estimator, optimizer, x_train, sizes: Sizes):
    """A jitted ``chunk(carry, key) -> carry`` taking ``eval_every`` training steps."""
    # Equal latent draws per data point for every estimator: a leave-one-out group is one call.
    num_calls = sizes.loo_samples // estimator.traits.samples_per_call

    def loss(params, state, key, xb):
        keys = jax.random.split(key, xb.shape[0])
        elbos, aux = jax.vmap(
            lambda k, x: elbo_surrogate(model, estimator, params, state, k, x, num_calls))(keys, xb)
        return -jnp.mean(elbos), aux

    def step(carry, key):
        params, opt_state, est_state = carry
        k_batch, k_est = jax.random.split(key)
        idx = jax.random.randint(k_batch, (sizes.batch_size,), 0, x_train.shape[0])
        grads, aux = jax.grad(loss, has_aux=True)(params, est_state, k_est, x_train[idx])
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state,
                estimator.update(est_state, aux)), None

    @jax.jit
    def chunk(carry, key):
        return jax.lax.scan(step, carry, jax.random.split(key, sizes.eval_every))[0]

    return chunk


def make_evaluator(model: VAE, x_test, sizes: Sizes):
    """A jitted ``evaluate(params, key)``: the per-digit held-out discrete ELBO."""

    @jax.jit
    def evaluate(params, key):
        keys = jax.random.split(key, x_test.shape[0])
        return jax.vmap(lambda k, x: discrete_elbo(model, params, k, x, sizes.eval_samples))(
            keys, x_test)

    return evaluate


def vae_experiment(key: jax.Array, sizes: Sizes, log: _common.Progress) -> dict:
    k_data, k_init, k_train = jax.random.split(key, 3)
    x_train, x_test = load_binary_digits(k_data)
    pixels = x_train.shape[1]
    model = VAE(Encoder(sizes.latent_vars, sizes.latent_classes, sizes.hidden),
                Decoder(pixels, sizes.hidden))
    optimizer = optax.adam(LEARNING_RATE)
    evaluate = make_evaluator(model, x_test, sizes)
    num_chunks = max(1, sizes.train_steps // sizes.eval_every)
    steps = [sizes.eval_every * i for i in range(num_chunks + 1)]
    # Same initialization, data order and evaluation draws for every estimator: only the
    # gradient differs, so the final per-digit ELBOs can be compared in pairs.
    params0 = model.init(k_init, pixels)
    k_chunks, k_evals = jax.random.split(k_train)
    chunk_keys = jax.random.split(k_chunks, num_chunks)
    eval_keys = jax.random.split(k_evals, num_chunks + 1)
    curves, per_digit, seconds = {}, {}, {}
    for name, estimator in vae_estimators(sizes).items():
        chunk = make_vae_trainer(model, estimator, optimizer, x_train, sizes)
        carry = (params0, optimizer.init(params0), estimator.init())
        elbos = evaluate(params0, eval_keys[0])
        curve = [float(jnp.mean(elbos))]
        t0 = time.perf_counter()
        for i in range(num_chunks):
            carry = chunk(carry, chunk_keys[i])
            elbos = evaluate(carry[0], eval_keys[i + 1])
            curve.append(float(jnp.mean(elbos)))
            log(f"(c) {name}: step {steps[i + 1]:6d}  held-out ELBO {curve[-1]:8.3f}")
        seconds[name] = time.perf_counter() - t0
        curves[name], per_digit[name] = curve, np.asarray(elbos)
    final = {name: c[-1] for name, c in curves.items()}
    best = max(final, key=final.get)
    # Paired over the same test digits: the spread between digits cancels.
    gap = {n: float(np.mean(per_digit[best] - d)) for n, d in per_digit.items() if n != best}
    gap_se = {n: float(np.std(per_digit[best] - d, ddof=1) / np.sqrt(len(d)))
              for n, d in per_digit.items() if n != best}
    # Small data: the held-out ELBO can peak and then fall (overfitting); report the peak too.
    peak = {name: max(c) for name, c in curves.items()}
    peak_step = {name: steps[int(np.argmax(c))] for name, c in curves.items()}
    return {"steps": steps, "heldout_elbo": curves, "final_elbo": final, "best": best,
            "peak_elbo": peak, "peak_step": peak_step,
            "best_gap": gap, "best_gap_se": gap_se,
            "marginal_elbo": marginal_elbo(x_train, x_test), "train_seconds": seconds,
            "num_train": int(x_train.shape[0]), "num_test": int(x_test.shape[0]),
            "draws_per_datum": sizes.loo_samples}


def plot_vae(res: dict, path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, curve in res["heldout_elbo"].items():
        ax.plot(res["steps"], curve, marker=".", label=name.replace("_", " "))
    ax.axhline(res["marginal_elbo"], color="k", ls="--", label="exact: latent code ignored")
    ax.set_xlabel("training step")
    ax.set_ylabel("held-out ELBO (nats, exact categorical samples)")
    lo = min(min(c[1:] or c) for c in res["heldout_elbo"].values())
    ax.set_ylim(min(lo, res["marginal_elbo"]) - 2, None)
    ax.legend()
    _common.save_figure(fig, path)


# --------------------------------------------------------------------------------------------
# Run and verdict.


def run(output_dir, *, quick: bool, seed: int, **sizes) -> dict:
    """Runs (a)–(c), writes ``gumbel.json`` and three PNGs to ``output_dir``, returns the numbers.

    Args:
      output_dir: an existing or new folder (the caller decides about overwriting).
      quick: the report's budget (about a minute on 2 CPU cores) instead of the paper's.
      seed: PRNG seed.
      **sizes: overrides of ``Sizes`` fields.
    """
    sz = _common.resolve_sizes(QUICK, FULL, quick, sizes)
    out = _common.prepare_output_dir(output_dir, overwrite=True)
    log = _common.Progress("gumbel")
    key_a, key_b, key_c = jax.random.split(_common.prng_key(seed), 3)
    a = gumbel_max_experiment(key_a, sz)
    log(f"(a) χ² = {a['chi2']:.2f} on {a['dof']} dof, p = {a['p_value']:.3f}")
    plot_gumbel_max(a, out / "gumbel_max.png")
    b = bias_variance_experiment(key_b, sz, log)
    plot_bias_variance(b, out / "bias_variance.png")
    c = vae_experiment(key_c, sz, log)
    plot_vae(c, out / "vae_elbo.png")
    results = {"seed": seed, "quick": quick, "sizes": sz, "gumbel_max": a, "bias_variance": b,
               "vae": c, "seconds": log.elapsed()}
    results["verdict"] = dict(zip(("holds", "line"), verdict(results)))
    _common.write_json(out / "gumbel.json", results)
    return results


FIGURES = ("gumbel_max.png", "bias_variance.png", "vae_elbo.png")


def markdown(results: dict) -> str:
    """The report's tables: bias and variance against τ, and the VAE's held-out ELBOs."""
    a, b, c = results["gumbel_max"], results["bias_variance"], results["vae"]
    sf = b["score_function"]
    rows = [{"estimator": name, "τ": float(t), "relative bias": b[name]["relative_bias"][i],
             "± se": b[name]["relative_bias_se"][i], "total variance": b[name]["total_variance"][i]}
            for name in ("gumbel_softmax", "straight_through")
            for i, t in enumerate(b["temperatures"])]
    rows.append({"estimator": f"score_function (LOO K={sf['draws_per_sample']})", "τ": "-",
                 "relative bias": sf["relative_bias"], "± se": sf["relative_bias_se"],
                 "total variance": sf["total_variance"]})
    vae = [{"estimator": n, "final held-out ELBO": e, "peak": c["peak_elbo"][n],
            "peak step": c["peak_step"][n]} for n, e in c["final_elbo"].items()]
    vae.append({"estimator": "exact: latent code ignored",
                "final held-out ELBO": c["marginal_elbo"]})
    return "\n\n".join([
        f"Gumbel-Max: χ² = {a['chi2']:.2f} on {a['dof']} dof (p = {a['p_value']:.3g}). "
        f"Categorical problem: exact E_q[f] = {b['exact_value']:.4g}.",
        _common.markdown_table(rows, ["estimator", "τ", "relative bias", "± se",
                                      "total variance"], 3),
        _common.markdown_table(vae, ["estimator", "final held-out ELBO", "peak", "peak step"])])


P_VALUE_FLOOR = 1e-3   # a true null fails the χ² test with this probability
Z_BOUND = 4.0          # max |z| over the K gradient coordinates of an unbiased estimator


def verdict(results: dict) -> tuple[bool, str]:
    """Seed 001's claims, decided from the numbers.

    (a) Gumbel-Max is exact: χ² p-value ≥ 1e-3.
    (b) τ trades bias for variance: for Gumbel-Softmax, Kendall's rank correlation with τ is
        positive for the relative bias and negative for the variance, and the smallest τ has less
        bias and more variance than the largest; the score function is unbiased (max |z| < 4).
    (c) All three VAE estimators learn: the final held-out ELBO beats the exact ELBO of a model
        that ignores its latent code. The best at the budget (final ELBO, with paired standard
        errors) and each one's peak are reported, not judged.
    """
    a, b, c = results["gumbel_max"], results["bias_variance"], results["vae"]
    taus = np.asarray(b["temperatures"])
    gs = b["gumbel_softmax"]
    bias, var = np.asarray(gs["relative_bias"]), np.asarray(gs["total_variance"])
    rank_bias = scipy.stats.kendalltau(taus, bias).statistic
    rank_var = scipy.stats.kendalltau(taus, var).statistic
    ok_a = a["p_value"] >= P_VALUE_FLOOR
    trade = rank_bias > 0 and rank_var < 0 and bias[0] < bias[-1] and var[0] > var[-1]
    sf_unbiased = b["score_function"]["max_abs_zscore"] < Z_BOUND
    learned = {n: e > c["marginal_elbo"] for n, e in c["final_elbo"].items()}
    holds = bool(ok_a and trade and sf_unbiased and all(learned.values()))
    finals = ", ".join(f"{n} {e:.2f}" for n, e in sorted(c["final_elbo"].items(),
                                                          key=lambda kv: -kv[1]))
    ahead = ", ".join(f"+{g:.2f}±{c['best_gap_se'][n]:.2f} nats over {n}"
                      for n, g in c["best_gap"].items())
    peaks = ", ".join(f"{n} {e:.2f} at step {c['peak_step'][n]}"
                      for n, e in c["peak_elbo"].items())
    line = (f"seed 001 {'HOLDS' if holds else 'FAILS'}: "
            f"(a) Gumbel-Max χ² p={a['p_value']:.3g} ({'ok' if ok_a else 'rejected'}); "
            f"(b) Gumbel-Softmax τ {taus[0]:.2g}→{taus[-1]:.2g}: "
            f"bias {bias[0]:.3g}→{bias[-1]:.3g}, "
            f"variance {var[0]:.3g}→{var[-1]:.3g} (Kendall τ bias {rank_bias:+.2f}, var "
            f"{rank_var:+.2f}; {'trade-off' if trade else 'no trade-off'}), score function max|z|="
            f"{b['score_function']['max_abs_zscore']:.2f} "
            f"({'unbiased' if sf_unbiased else 'BIASED'}); "
            f"(c) held-out ELBO {finals} vs {c['marginal_elbo']:.2f} without latents "
            f"({'all learn' if all(learned.values()) else 'not all learn'}); best: {c['best']}"
            f" ({ahead}); peak held-out ELBO {peaks}")
    return holds, line


# --------------------------------------------------------------------------------------------
# Command line.


def _define_flags() -> None:
    _common.define_common_flags("results/gumbel")
    _common.define_size_flags(QUICK, FULL)
    # The flags are defined in _common; list them in this module's --help.
    flags.adopt_module_key_flags(_common)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    fv = flags.FLAGS
    out = _common.output_dir_or_exit(fv.output_dir, fv.overwrite)
    results = run(out, quick=fv.quick, seed=fv.seed, **_common.sizes_from_flags(Sizes, fv))
    print(results["verdict"]["line"])
    print(f"wrote {out}")


if __name__ == "__main__":
    _define_flags()
    app.run(main)
