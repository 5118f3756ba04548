r"""The discrete estimators compared as their papers compare them: REINFORCE, ARM, DisARM, REBAR,
RELAX, Gumbel-Rao, straight-through and the unordered set estimator.

    python -m experiments.discrete_estimators --output_dir=results/discrete_estimators [--quick]

(a) The toy problem of the RELAX paper (Grathwohl et al., 2018, §6.1): minimize
    E_{b ~ Bernoulli(σ(θ))}[(b − t)²] with t = 0.499 over the logit θ, from θ = 0. The exact
    gradient σ(θ)(1 − σ(θ))(1 − 2t) is tiny next to f ≈ ¼, so an estimator's noise swamps it
    unless its control variate is good. Each estimator (one surrogate call per Adam step) is run
    from several seeds; at every step its per-sample gradient variance and mean are measured at
    the current θ from ``toy_samples`` further draws, beside the exact gradient.
    Reported: the variance at θ = 0 per sample and per function evaluation (variance × evaluations
    per sample: the variance of an average at a fixed number of evaluations, up to the budget),
    the bias against the exact gradient in standard errors, and whether optimization drives
    σ(θ) → 0 (final σ(θ) < ``P_SOLVED``). REBAR cannot beat plain REINFORCE here, whatever its
    (η, λ): its control variate correlates with REINFORCE's noise only through the relaxed f at
    the threshold, f(σ_λ(0)) = (½ − t)² = 10⁻⁶ (module docstring of ``gradest.rebar``), so its
    best η is 0, REINFORCE itself, and its trained η goes there; RELAX's network, whose constant
    acts as a baseline, can. Per function evaluation (REBAR and RELAX cost 2), REBAR is then
    twice as noisy as REINFORCE.

(b) A discrete-latent VAE on scikit-learn's 8×8 digits (binarized, as in ``experiments.gumbel``),
    with binary latents (D independent Bernoullis, prior Bernoulli(½)) and with one categorical
    latent of K classes (prior uniform); encoder and decoder are one-hidden-layer MLPs. The ELBO
    E_q[log p(x|z)] − KL(q‖prior) has an analytic KL; its first term is each estimator's job. Every
    estimator gets the same number E of function evaluations (decoder passes) per data point and
    gradient estimate, so it averages E / (its evaluations per call) surrogate calls. Each step
    draws two independent estimates on its batch and follows their mean; ½‖g₁ − g₂‖² over the
    encoder's parameters estimates, without bias, the total variance of one estimate, averaged
    over every ``eval_every`` steps, when the held-out ELBO (exact discrete samples) is measured
    too. Means and standard errors are over seeds (trained at once, vmapped), which share
    initializations, data order and evaluation draws across estimators (paired comparisons).
    The quick budget trains the VAEs with the unbiased estimators only (the verdict's); the
    biased Gumbel-Rao and straight-through join at the full budget.

Verdicts (functions of the numbers only): the unbiased estimator with the lowest variance per
function evaluation, in (a) at θ = 0 and in each VAE (mean log₁₀ variance over training); and
whether the variance orderings that the DisARM and RELAX papers report hold here: DisARM ≤ ARM,
RELAX ≤ REBAR ≤ REINFORCE (with a leave-one-out baseline in the VAEs), compared as the papers
compare them on the toy, per sample (one surrogate call per step), and at equal function
evaluations in the VAEs (``RULE``).
"""

from __future__ import annotations

import dataclasses
import math

from absl import app, flags
import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

import gradest
from gradest import baselines
from experiments import _common, gumbel

size = _common.size_field


@dataclasses.dataclass(frozen=True)
class Sizes:
    """Budget knobs; ``run(..., **sizes)`` and the same-named flags override them."""

    toy_steps: int = size(3_000, "Adam steps on the toy problem in (a).")
    toy_eval_every: int = size(300, "Steps between variance measurements in (a).")
    toy_samples: int = size(2_000, "Per-sample gradients drawn at every step in (a).")
    num_seeds: int = size(5, "Seeds per estimator (toy runs and VAE trainings).")
    latent_bits: int = size(16, "Bernoulli latent variables of the binary VAE in (b).")
    latent_classes: int = size(16, "Classes of the categorical VAE's latent variable in (b).")
    hidden: int = size(128, "Width of the encoder's and decoder's hidden layer in (b).")
    evaluations: int = size(6, "Function evaluations (decoder passes) per data point and estimate.")
    train_steps: int = size(3_000, "Adam steps per VAE training in (b).")
    batch_size: int = size(32, "Data points per VAE training step in (b).")
    eval_every: int = size(300, "Steps between held-out ELBO and variance measurements in (b).")
    eval_samples: int = size(16, "Exact latent draws per held-out digit for the ELBO in (b).")


QUICK = Sizes(toy_steps=600, toy_eval_every=200, toy_samples=1_000, num_seeds=3, latent_bits=8,
              latent_classes=8, hidden=32, train_steps=300, batch_size=16, eval_every=100,
              eval_samples=4)
FULL = Sizes()

TARGET = 0.499          # t of the toy problem
TOY_LEARNING_RATE = 0.01
VAE_LEARNING_RATE = 1e-3
CV_LEARNING_RATE = 3e-3  # Adam on REBAR's (η, log λ) and RELAX's network, in the VAEs
# On the toy, φ sees one sample per step and has the warm-up's toy_eval_every steps to reach its
# optimum at θ = 0 (REBAR: η → 0; RELAX: its constant → f ≈ ¼); at 3e-3, Adam moves each
# parameter by at most ~0.6 in 200 steps, and an untrained φ, not the estimator, would be compared.
TOY_CV_LEARNING_RATE = 3e-2
TEMPERATURE = 0.5        # τ of Gumbel-Rao and straight-through; REBAR's initial λ
RAO_SAMPLES = 10         # conditional draws of Gumbel-Rao
CV_HIDDEN = 16           # hidden units of RELAX's network
P_SOLVED = 0.05          # the toy is solved when σ(θ) falls below this
SE_MULTIPLE = 2.0        # an ordering is decided when the difference exceeds this many SEs
# The smallest per-sample variance the toy can resolve in float32: a per-sample gradient is
# computed from f ≤ (1 − t)² with a relative rounding error of ~ε₃₂, so a spread below
# (ε₃₂ · (1 − t)²)² ≈ 9e-16 is rounding, not the estimator's. DisARM at θ = 0 is exactly the
# gradient on every draw (its two antithetic draws always differ): what is measured there is
# rounding (2e-18 with XLA's optimizations, exactly 0 without), so every variance is reported
# as at least this floor and the table says "≤" for those at it.
TOY_VARIANCE_RESOLUTION = (float(np.finfo(np.float32).eps) * (1.0 - TARGET) ** 2) ** 2

# The orderings reported by Dong et al. (2020: DisARM < ARM) and Grathwohl et al. (2018: RELAX ≤
# REBAR ≤ REINFORCE; on the toy, Fig. 1, against plain REINFORCE; on the VAE, Table 1, against
# REINFORCE with a baseline): (lower, higher).
PAPER_ORDERINGS = {
    "toy": (("disarm", "arm"), ("relax", "rebar"), ("rebar", "reinforce")),
    "vae": (("disarm", "arm"), ("relax", "rebar"), ("rebar", "reinforce_loo")),
}

LABELS = {"reinforce": "REINFORCE", "reinforce_loo": "REINFORCE + LOO baseline", "arm": "ARM",
          "disarm": "DisARM", "rebar": "REBAR", "relax": "RELAX", "gumbel_rao": "Gumbel-Rao",
          "straight_through": "straight-through", "unordered_set": "unordered set"}


def _cv_optimizer(learning_rate: float = CV_LEARNING_RATE):
    return optax.adam(learning_rate)


# --------------------------------------------------------------------------------------------
# (a) The toy problem.


def toy_dist(params):
    return distrax.Bernoulli(logits=params["logit"], dtype=jnp.float32)


def toy_f(params, b):
    del params
    return (b - TARGET) ** 2


def toy_exact_grad(logit):
    """∂/∂θ [σ(θ)(1 − t)² + (1 − σ(θ)) t²] = σ(θ)(1 − σ(θ))(1 − 2t)."""
    p = jax.nn.sigmoid(logit)
    return p * (1.0 - p) * (1.0 - 2.0 * TARGET)


def toy_estimators(key: jax.Array) -> dict:
    return {
        "reinforce": gradest.score_function(),
        "reinforce_loo": gradest.score_function(baselines.leave_one_out(2)),
        "arm": gradest.arm(),
        "disarm": gradest.disarm(),
        "rebar": gradest.rebar(TEMPERATURE, optimizer=_cv_optimizer(TOY_CV_LEARNING_RATE)),
        "relax": gradest.relax(gradest.relax_control_variate(key, 1, CV_HIDDEN, TEMPERATURE),
                               _cv_optimizer(TOY_CV_LEARNING_RATE)),
        "gumbel_rao": gradest.gumbel_rao(TEMPERATURE, RAO_SAMPLES),
        "straight_through": gradest.straight_through(TEMPERATURE),
    }


def _moments(g: jax.Array) -> dict:
    """Mean, variance and the standard error of the variance, sqrt((m4 − m2²)/n), of samples."""
    n = g.shape[0]
    mean = jnp.mean(g)
    c = g - mean
    m2, m4 = jnp.mean(c**2), jnp.mean(c**4)
    # m4 ≥ m2², equal for draws ±a (about what REINFORCE + LOO gives at θ = 0 on the toy), where
    # float32 rounding can make the difference negative: 0, not NaN.
    return {"mean": mean, "variance": m2 * n / (n - 1),
            "variance_se": jnp.sqrt(jnp.maximum(m4 - m2**2, 0.0) / n),
            "mean_se": jnp.sqrt(m2 / n)}


def make_toy_run(estimator, sizes: Sizes):
    """A jitted, seed-vmapped ``run(keys) -> metrics`` of one estimator on the toy problem.

    Every step draws ``toy_samples`` per-sample gradients at the current θ (one vmapped graph,
    so one compilation) and records their moments; Adam and the estimator's ``update`` use the
    first draw only, one surrogate call per step as in the RELAX paper. The first
    ``toy_eval_every`` steps hold θ at 0 and train only the estimator's state (REBAR's and
    RELAX's control variates), so that estimators are compared at one θ with trained φ.
    """
    optimizer = optax.adam(TOY_LEARNING_RATE)
    warmup = sizes.toy_eval_every

    def step(carry, inputs):
        key, index = inputs
        params, opt_state, state = carry
        keys = jax.random.split(key, sizes.toy_samples)
        grads, _, aux = gradest.per_sample_grads(estimator, keys, params, toy_dist, toy_f, state)
        first = jax.tree.map(lambda g: g[0], grads)
        updates, new_opt_state = optimizer.update(first, opt_state, params)
        moving = index >= warmup
        params_next = jax.tree.map(lambda p, u: p + jnp.where(moving, u, 0.0), params, updates)
        opt_state = jax.tree.map(lambda new, old: jnp.where(moving, new, old), new_opt_state,
                                 opt_state)
        state = estimator.update(state, jax.tree.map(lambda a: a[:1], aux))
        metrics = dict(_moments(grads["logit"]), p=jax.nn.sigmoid(params["logit"]),
                       exact=toy_exact_grad(params["logit"]))
        return (params_next, opt_state, state), metrics

    def run(key):
        params = {"logit": jnp.zeros(())}
        carry = (params, optimizer.init(params), estimator.init())
        n = warmup + sizes.toy_steps + 1
        _, metrics = jax.lax.scan(step, carry, (jax.random.split(key, n), jnp.arange(n)))
        # Every toy_eval_every-th step: θ = 0 untrained, θ = 0 after the warm-up, then Adam.
        return jax.tree.map(lambda m: m[::sizes.toy_eval_every], metrics)

    return jax.jit(jax.vmap(run))


def toy_experiment(key: jax.Array, sizes: Sizes, log: _common.Progress) -> dict:
    k_cv, k_runs = jax.random.split(key)
    seeds = jax.random.split(k_runs, sizes.num_seeds)
    # Measurement points: step 0 and the end of the warm-up (both at θ = 0), then Adam steps.
    steps = list(range(-sizes.toy_eval_every, sizes.toy_steps + 1, sizes.toy_eval_every))
    out = {"target": TARGET, "steps": steps, "estimators": {}}
    for name, estimator in toy_estimators(k_cv).items():
        m = jax.tree.map(np.asarray, make_toy_run(estimator, sizes)(seeds))
        evals = estimator.traits.function_evaluations
        # At θ = 0 after the warm-up (index 1), for every seed: pool the seeds' measurements.
        var0_measured = float(np.mean(m["variance"][:, 1]))
        resolved = var0_measured > TOY_VARIANCE_RESOLUTION
        var0 = max(var0_measured, TOY_VARIANCE_RESOLUTION)
        var0_se = (float(np.sqrt(np.sum(m["variance_se"][:, 1] ** 2)) / sizes.num_seeds)
                   if resolved else 0.0)
        # The mean's standard error, at least float32's resolution of one per-sample gradient,
        # ε₃₂ (1 − t)² (DisARM's is 0 at θ = 0; the rounding of a float32 mean does not shrink
        # as 1/√n: with √(floor/n) its bias z read −15 on the full budget).
        mean_se = np.maximum(m["mean_se"][:, 1], math.sqrt(TOY_VARIANCE_RESOLUTION))
        bias_z = float(np.mean(m["mean"][:, 1] - m["exact"][:, 1])
                       / (np.sqrt(np.sum(mean_se ** 2)) / sizes.num_seeds))
        final_p = m["p"][:, -1]
        out["estimators"][name] = {
            "unbiased": estimator.traits.unbiased, "evaluations": evals,
            "variance_init": var0, "variance_init_se": var0_se,
            "variance_init_measured": var0_measured, "variance_init_resolved": resolved,
            "variance_per_evaluation_init": var0 * evals,
            "log10_variance_init": math.log10(var0),
            "log10_variance_init_se": var0_se / (var0 * math.log(10.0)),
            "log10_variance_per_evaluation_init": math.log10(var0 * evals),
            "log10_variance_per_evaluation_init_se": var0_se / (var0 * math.log(10.0)),
            "variance_untrained": float(np.mean(m["variance"][:, 0])),
            "exact_grad_init": float(m["exact"][0, 1]),
            "bias_zscore_init": bias_z,
            "final_p": final_p.tolist(), "solved_fraction": float(np.mean(final_p < P_SOLVED)),
            "p_curve": m["p"].tolist(), "variance_curve": m["variance"].tolist(),
            "exact_curve": m["exact"].tolist(),
        }
        log(f"(a) {name}: variance at θ=0 {'' if resolved else '≤ '}{var0:.3g} (× {evals} "
            f"evaluations), final σ(θ) "
            f"median {np.median(final_p):.3g}")
    return out


def plot_toy(res: dict, path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    steps = res["steps"]
    for name, r in res["estimators"].items():
        style = "-" if r["unbiased"] else "--"
        axes[0].plot(steps, np.median(r["p_curve"], axis=0), style, marker=".", label=LABELS[name])
        axes[1].plot(steps, np.maximum(np.median(r["variance_curve"], axis=0),
                                       TOY_VARIANCE_RESOLUTION), style, marker=".",
                     label=LABELS[name])
    any_r = next(iter(res["estimators"].values()))
    axes[1].plot(steps, np.median(np.square(any_r["exact_curve"]), axis=0), "k:",
                 label="exact gradient², at REINFORCE's θ")
    axes[1].axhline(TOY_VARIANCE_RESOLUTION, color="grey", lw=0.8,
                    label="float32 resolution (values below drawn at it)")
    axes[0].set_ylabel("σ(θ) (median over seeds)")
    axes[1].set_ylabel("per-sample gradient variance (median)")
    for ax in axes:
        ax.set_yscale("log")
        ax.set_xlabel("Adam step")
    axes[0].set_title(f"toy: min E[(b − {TARGET})²]")
    axes[1].legend(fontsize=7)
    _common.save_figure(fig, path)


# --------------------------------------------------------------------------------------------
# (b) The discrete-latent VAE.


class LatentEncoder(nn.Module):
    num_logits: int
    hidden: int

    @nn.compact
    def __call__(self, x):
        return nn.Dense(self.num_logits)(nn.relu(nn.Dense(self.hidden)(x)))


@dataclasses.dataclass(frozen=True)
class DiscreteVAE:
    """q(z|x) independent Bernoullis (``latent="binary"``) or one categorical; Bernoulli pixels."""

    latent: str
    num_logits: int
    hidden: int
    pixels: int

    def init(self, key: jax.Array) -> dict:
        k_enc, k_dec = jax.random.split(key)
        return {"encoder": LatentEncoder(self.num_logits, self.hidden).init(
                    k_enc, jnp.zeros(self.pixels)),
                "decoder": gumbel.Decoder(self.pixels, self.hidden).init(
                    k_dec, jnp.zeros(self.num_logits))}

    def posterior(self, params: dict, x: jax.Array):
        logits = LatentEncoder(self.num_logits, self.hidden).apply(params["encoder"], x)
        if self.latent == "binary":
            return gradest.Bernoulli(logits=logits, dtype=jnp.float32)
        return distrax.OneHotCategorical(logits=logits, dtype=jnp.float32)

    def log_likelihood(self, params: dict, x: jax.Array, z: jax.Array) -> jax.Array:
        logits = gumbel.Decoder(self.pixels, self.hidden).apply(params["decoder"], z)
        return -jnp.sum(optax.sigmoid_binary_cross_entropy(logits, x))

    def kl(self, logits: jax.Array) -> jax.Array:
        """KL(q ‖ prior), exactly: Σ_i [q_i log 2q_i + (1 − q_i) log 2(1 − q_i)] for Bernoulli(½)
        priors, Σ_k q_k log K q_k for a uniform one."""
        if self.latent == "binary":
            q = jax.nn.sigmoid(logits)
            return jnp.sum(q * jax.nn.log_sigmoid(logits) + (1.0 - q) * jax.nn.log_sigmoid(-logits)
                           + math.log(2.0))
        return gumbel.kl_to_uniform(logits)


def vae_estimators(latent: str, key: jax.Array, sizes: Sizes, biased: bool = True) -> dict:
    """Every discrete estimator that applies to the latent (without the biased Gumbel ones unless
    ``biased``). Cost per call: its evaluations."""
    num_logits = sizes.latent_bits if latent == "binary" else sizes.latent_classes
    e = sizes.evaluations
    out = {"reinforce_loo": gradest.score_function(baselines.leave_one_out(e))}
    if latent == "binary":
        out.update(arm=gradest.arm(), disarm=gradest.disarm())
    out.update(
        rebar=gradest.rebar(TEMPERATURE, optimizer=_cv_optimizer()),
        relax=gradest.relax(gradest.relax_control_variate(key, num_logits, CV_HIDDEN,
                                                          TEMPERATURE), _cv_optimizer()))
    if biased:
        out.update(gumbel_rao=gradest.gumbel_rao(TEMPERATURE, RAO_SAMPLES),
                   straight_through=gradest.straight_through(TEMPERATURE))
    if latent == "categorical":
        if e >= sizes.latent_classes:
            # A set of every class is exact enumeration: variance 0 (log₁₀ −∞), not a sample.
            raise ValueError(f"evaluations={e} is not below latent_classes="
                             f"{sizes.latent_classes}: the unordered set would sample every class "
                             "and return the exact gradient, with nothing to compare")
        out["unordered_set"] = gradest.unordered_set(e)
    for name, est in out.items():
        if e % est.traits.function_evaluations:
            raise ValueError(f"evaluations={e} is not a multiple of {name}'s "
                             f"{est.traits.function_evaluations} evaluations per call")
    return out


def make_vae_chunk(model: DiscreteVAE, estimator, x_train, sizes: Sizes):
    """A jitted, seed-vmapped ``chunk(carry, keys) -> (carry, log10 variance)`` of
    ``eval_every`` training steps.

    Each step draws two independent gradient estimates on the same batch, each with E function
    evaluations per data point, and updates with their mean; ½‖g₁ − g₂‖² over the encoder's
    parameters is an unbiased estimate of the total variance of one estimate (given θ and the
    batch), averaged over the chunk. Two draws in one vmapped graph: one compilation.
    """
    optimizer = optax.adam(VAE_LEARNING_RATE)
    num_calls = sizes.evaluations // estimator.traits.function_evaluations

    def datum_loss(params, state, key, x):
        def make_dist(p):
            return model.posterior(p, x)

        def f(p, z):
            return model.log_likelihood(p, x, z)

        values, aux = jax.vmap(estimator.surrogate, in_axes=(0, None, None, None, None))(
            jax.random.split(key, num_calls), params, make_dist, f, state)
        return -(jnp.mean(values) - model.kl(make_dist(params).logits)), aux

    def batch_loss(params, state, key, xb):
        losses, aux = jax.vmap(datum_loss, in_axes=(None, None, 0, 0))(
            params, state, jax.random.split(key, xb.shape[0]), xb)
        return jnp.mean(losses), aux

    grad_fn = jax.grad(batch_loss, has_aux=True)

    def step(carry, key):
        params, opt_state, state = carry
        k_batch, k_est = jax.random.split(key)
        xb = x_train[jax.random.randint(k_batch, (sizes.batch_size,), 0, x_train.shape[0])]
        grads, aux = jax.vmap(grad_fn, in_axes=(None, None, 0, None))(
            params, state, jax.random.split(k_est, 2), xb)
        diff = jax.tree.leaves(jax.tree.map(lambda g: g[0] - g[1], grads["encoder"]))
        variance = 0.5 * sum(jnp.sum(d**2) for d in diff)
        updates, opt_state = optimizer.update(jax.tree.map(lambda g: jnp.mean(g, axis=0), grads),
                                              opt_state, params)
        return (optax.apply_updates(params, updates), opt_state,
                estimator.update(state, aux)), variance

    def chunk(carry, key):
        carry, variances = jax.lax.scan(step, carry, jax.random.split(key, sizes.eval_every))
        return carry, jnp.log10(jnp.mean(variances))

    return jax.jit(jax.vmap(chunk))


def make_evaluator(model: DiscreteVAE, x_test, sizes: Sizes):
    """A jitted, seed-vmapped ``evaluate(params, keys)``: the held-out ELBO with exact samples."""

    def evaluate(params, key):
        def heldout(k, x):
            dist = model.posterior(params, x)
            z = jax.vmap(lambda kk: dist.sample(seed=kk))(jax.random.split(k, sizes.eval_samples))
            ll = jax.vmap(lambda zi: model.log_likelihood(params, x, zi))(z)
            return jnp.mean(ll) - model.kl(dist.logits)

        return jnp.mean(jax.vmap(heldout)(jax.random.split(key, x_test.shape[0]), x_test))

    return jax.jit(jax.vmap(evaluate))


def _mean_se(x: np.ndarray) -> tuple[float, float]:
    """Mean over seeds (axis 0) and its standard error (0 for one seed)."""
    x = np.asarray(x, np.float64)
    se = float(np.std(x, ddof=1) / np.sqrt(len(x))) if len(x) > 1 else 0.0
    return float(np.mean(x)), se


def vae_experiment(key: jax.Array, sizes: Sizes, log: _common.Progress,
                   biased: bool = True) -> dict:
    """Trains both VAEs with each estimator of ``vae_estimators(..., biased)``: ELBO and
    variance curves, means and standard errors over seeds."""
    k_data, k_cv, k_init, k_runs = jax.random.split(key, 4)
    x_train, x_test = gumbel.load_binary_digits(k_data)
    num_chunks = sizes.train_steps // sizes.eval_every
    out = {"steps": [sizes.eval_every * i for i in range(num_chunks + 1)],
           "evaluations_per_step": sizes.evaluations,
           "marginal_elbo": float(np.mean(gumbel.marginal_elbo(x_train, x_test)))}
    # The same initializations, data order and evaluation draws for every estimator: paired.
    init_keys = jax.random.split(k_init, sizes.num_seeds)
    chunk_keys = jax.random.split(k_runs, (num_chunks, sizes.num_seeds))
    eval_keys = jax.random.split(jax.random.fold_in(k_runs, 1), (num_chunks + 1, sizes.num_seeds))
    for latent in ("binary", "categorical"):
        num_logits = sizes.latent_bits if latent == "binary" else sizes.latent_classes
        model = DiscreteVAE(latent, num_logits, sizes.hidden, int(x_train.shape[1]))
        params0 = jax.jit(jax.vmap(model.init))(init_keys)
        optimizer = optax.adam(VAE_LEARNING_RATE)
        evaluate = make_evaluator(model, x_test, sizes)
        elbo0 = np.asarray(evaluate(params0, eval_keys[0]))
        rows = {}
        for name, estimator in vae_estimators(latent, k_cv, sizes, biased).items():
            chunk = make_vae_chunk(model, estimator, x_train, sizes)
            states = jax.tree.map(lambda x: jnp.broadcast_to(x, (sizes.num_seeds,) + jnp.shape(x)),
                                  estimator.init())
            carry = (params0, jax.vmap(optimizer.init)(params0), states)
            elbos, variances = [elbo0], []
            for i in range(num_chunks):
                carry, log_var = chunk(carry, chunk_keys[i])
                elbos.append(np.asarray(evaluate(carry[0], eval_keys[i + 1])))
                variances.append(np.asarray(log_var))
            elbo_curve = np.stack(elbos, axis=1)            # [seeds, checkpoints]
            var_curve = np.stack(variances, axis=1)         # [seeds, chunks]
            final_elbo, final_elbo_se = _mean_se(elbo_curve[:, -1])
            per_seed_var = np.mean(var_curve, axis=1)
            var, var_se = _mean_se(per_seed_var)
            rows[name] = {
                "unbiased": estimator.traits.unbiased,
                "evaluations_per_call": estimator.traits.function_evaluations,
                "calls": sizes.evaluations // estimator.traits.function_evaluations,
                "elbo_curve": elbo_curve.tolist(), "log10_variance_curve": var_curve.tolist(),
                "final_elbo": final_elbo, "final_elbo_se": final_elbo_se,
                "log10_variance": var, "log10_variance_se": var_se,
                "log10_variance_per_seed": per_seed_var.tolist(),
            }
            log(f"(b) {latent} {name}: held-out ELBO {final_elbo:.2f} ± {final_elbo_se:.2f}, "
                f"log10 variance {var:.2f} ± {var_se:.2f}")
        out[latent] = rows
    return out


def plot_vae(res: dict, path) -> None:
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    steps = np.asarray(res["steps"])
    for row, latent in enumerate(("binary", "categorical")):
        for name, r in res[latent].items():
            style = "-" if r["unbiased"] else "--"
            for col, field in enumerate(("elbo_curve", "log10_variance_curve")):
                curve = np.asarray(r[field])
                # The variance is the mean over each chunk of steps: plotted at the chunk's end.
                x = steps if col == 0 else steps[1:]
                mean = curve.mean(axis=0)
                se = curve.std(axis=0, ddof=1) / np.sqrt(len(curve)) if len(curve) > 1 else 0 * mean
                axes[row, col].plot(x, mean, style, label=LABELS[name])
                axes[row, col].fill_between(x, mean - se, mean + se, alpha=0.2)
        axes[row, 0].axhline(res["marginal_elbo"], color="k", ls=":", label="latent code ignored")
        axes[row, 0].set_ylabel(f"{latent}: held-out ELBO (nats)")
        axes[row, 1].set_ylabel(f"{latent}: log₁₀ tr Var of the encoder gradient")
        lo = min(np.mean(r["elbo_curve"], axis=0)[1:].min() for r in res[latent].values())
        axes[row, 0].set_ylim(min(lo, res["marginal_elbo"]) - 2, None)
        axes[row, 1].legend(fontsize=7)
    for ax in axes[1]:
        ax.set_xlabel(f"training step ({res['evaluations_per_step']} evaluations per data point)")
    _common.save_figure(fig, path)


# --------------------------------------------------------------------------------------------
# Verdicts: functions of the numbers only.


def lowest_variance(rows: dict, field: str) -> str:
    """The unbiased estimator with the smallest ``field`` (a variance at an equal number of
    function evaluations); biased ones are left out, since a constant has zero variance."""
    unbiased = {n: r[field] for n, r in rows.items() if r["unbiased"]}
    return min(unbiased, key=unbiased.get)


def compare(lower: float, higher: float, se: float) -> str:
    """"holds" if ``lower`` is below ``higher`` by more than ``SE_MULTIPLE`` standard errors of
    the difference, "reversed" if above by more, "tie" otherwise."""
    d = lower - higher
    if d < -SE_MULTIPLE * se:
        return "holds"
    if d > SE_MULTIPLE * se:
        return "reversed"
    return "tie"


def orderings(pairs, rows: dict, field: str, se_of_difference) -> list[dict]:
    """Each paper ordering (lower, higher) of ``pairs`` whose estimators both ran: its outcome by
    ``compare`` with ``se_of_difference(lower_row, higher_row)``."""
    out = []
    for lo, hi in pairs:
        if lo in rows and hi in rows:
            se = se_of_difference(rows[lo], rows[hi])
            out.append({"lower": lo, "higher": hi, "lower_value": rows[lo][field],
                        "higher_value": rows[hi][field], "se": se,
                        "outcome": compare(rows[lo][field], rows[hi][field], se)})
    return out


def _toy_se(a: dict, b: dict) -> float:
    """Independent draws (the same seeds, but each estimator's own samples)."""
    return math.hypot(a["log10_variance_init_se"], b["log10_variance_init_se"])


def _vae_se(a: dict, b: dict) -> float:
    """Paired over seeds (same initializations and data order)."""
    d = np.asarray(a["log10_variance_per_seed"]) - np.asarray(b["log10_variance_per_seed"])
    return float(np.std(d, ddof=1) / np.sqrt(len(d))) if len(d) > 1 else 0.0


RULE = ("Holds when no paper ordering (DisARM ≤ ARM; RELAX ≤ REBAR ≤ REINFORCE, on the toy "
        "without and in the VAEs with a leave-one-out baseline) is reversed, a reversal being "
        "that the estimator reported lower has a log₁₀ variance above the other's by more than "
        f"{SE_MULTIPLE:g} standard errors, on the toy per sample at θ = 0 after the control "
        "variates' warm-up (one sample per step, what the papers compare) or in either VAE at "
        "equal function evaluations per step (mean over training, paired over seeds).")


def verdict(results: dict) -> tuple[bool, str]:
    """Rule (``RULE``): the papers' orderings hold here unless one is reversed, i.e. the
    estimator they report as lower has a log₁₀ variance above the other's by more than 2 standard
    errors: in (a) per sample at θ = 0 after the control variates' warm-up (the papers step with
    one sample of each estimator, whatever its evaluations; REBAR against plain REINFORCE, as in
    the RELAX paper's Fig. 1), in (b) at equal function evaluations per step (REINFORCE needs
    several samples for its leave-one-out baseline), mean over training, paired over seeds. The
    lowest-variance unbiased estimator of each part per function evaluation (the fair-cost
    ranking) and the toy's solvers (final σ(θ) < 0.05 on every seed) are reported.
    """
    toy, vae = results["toy"]["estimators"], results["vae"]
    parts = {"toy": orderings(PAPER_ORDERINGS["toy"], toy, "log10_variance_init", _toy_se)}
    for latent in ("binary", "categorical"):
        parts[latent] = orderings(PAPER_ORDERINGS["vae"], vae[latent], "log10_variance", _vae_se)
    reversed_ = [(part, o) for part, os in parts.items() for o in os if o["outcome"] == "reversed"]
    holds = not reversed_
    best = {"toy": lowest_variance(toy, "log10_variance_per_evaluation_init"),
            **{lt: lowest_variance(vae[lt], "log10_variance") for lt in ("binary", "categorical")}}
    solved = [n for n, r in toy.items() if r["solved_fraction"] == 1.0]

    def fmt(o):
        return (f"{o['lower']} {o['lower_value']:.3f} vs {o['higher']} {o['higher_value']:.3f} "
                f"(±{o['se']:.3f}: {o['outcome']})")

    orders = "; ".join(f"{part}: " + ", ".join(fmt(o) for o in os) for part, os in parts.items())
    line = (f"paper orderings {'HOLD' if holds else 'FAIL'} (log10 variance; toy per sample, "
            f"VAEs at equal evaluations) — "
            f"{orders}. Lowest variance per evaluation (unbiased): toy {best['toy']}, binary VAE "
            f"{best['binary']}, categorical VAE {best['categorical']}. Toy solved (σ(θ) < "
            f"{P_SOLVED} on every seed) by: {', '.join(solved) or 'none'}")
    return holds, line


# --------------------------------------------------------------------------------------------
# Run, report, command line.


def run(output_dir, *, quick: bool, seed: int, **sizes) -> dict:
    """Runs (a) and (b), writes ``discrete_estimators.json`` and two PNGs, returns the numbers."""
    sz = _common.resolve_sizes(QUICK, FULL, quick, sizes)
    out = _common.prepare_output_dir(output_dir, overwrite=True)
    log = _common.Progress("discrete_estimators")
    key_a, key_b = jax.random.split(jax.random.key(seed))
    for latent in ("binary", "categorical"):
        vae_estimators(latent, key_b, sz)  # sizes the VAEs refuse fail now, not after the toy
    toy = toy_experiment(key_a, sz, log)
    plot_toy(toy, out / "toy.png")
    # The quick budget trains the VAEs with the unbiased estimators only, which the verdict
    # compares (compiling each program takes most of its time); the toy keeps every estimator.
    vae = vae_experiment(key_b, sz, log, biased=not quick)
    plot_vae(vae, out / "vae.png")
    results = {"seed": seed, "quick": quick, "sizes": sz, "toy": toy, "vae": vae,
               "seconds": log.elapsed()}
    results["verdict"] = dict(zip(("holds", "line"), verdict(results)))
    _common.write_json(out / "discrete_estimators.json", results)
    return results


FIGURES = ("toy.png", "vae.png")


def _at_resolution(row: dict, value: float):
    """The value, or "≤ value" where the toy's variance was below float32's resolution."""
    return value if row.get("variance_init_resolved", True) else f"≤ {value:.3g}"


def markdown(results: dict) -> str:
    """The toy table (at θ = 0 and after training) and the two VAE tables."""
    toy, vae = results["toy"], results["vae"]
    rows = [{"estimator": LABELS[n], "evaluations": r["evaluations"],
             "unbiased": "yes" if r["unbiased"] else "no",
             "untrained": r["variance_untrained"],
             "variance at θ=0": _at_resolution(r, r["variance_init"]),
             "× evaluations": _at_resolution(r, r["variance_per_evaluation_init"]),
             "exact |∇|": abs(r["exact_grad_init"]), "bias (z)": r["bias_zscore_init"],
             "final σ(θ) (median)": float(np.median(r["final_p"])),
             "seeds solved": r["solved_fraction"]} for n, r in toy["estimators"].items()]
    toy_cols = ["estimator", "evaluations", "unbiased", "untrained", "variance at θ=0",
                "× evaluations", "exact |∇|", "bias (z)", "final σ(θ) (median)", "seeds solved"]
    caption = (f"(a) Toy, t = {toy['target']}: per-sample variance at θ = 0 before ('untrained') "
               "and after the control variates' warm-up, the exact gradient, and where Adam took "
               "σ(θ). The papers' orderings are checked on the per-sample variance (the papers "
               "step with one sample); '× evaluations' is the fair-cost one. REBAR's best (η, λ) "
               "here is η = 0, plain REINFORCE: its relaxed f at the threshold, (½ − t)², is "
               "what would correlate it with REINFORCE's noise.")
    tables = [caption, _common.markdown_table(rows, toy_cols, 3)]
    cols = ["estimator", "calls × evaluations", "unbiased", "final held-out ELBO", "± se",
            "log10 variance", "± se "]
    for latent in ("binary", "categorical"):
        rows = [{"estimator": LABELS[n], "calls × evaluations":
                 f"{r['calls']} × {r['evaluations_per_call']}",
                 "unbiased": "yes" if r["unbiased"] else "no", "final held-out ELBO": r["final_elbo"],
                 "± se": r["final_elbo_se"], "log10 variance": r["log10_variance"],
                 "± se ": r["log10_variance_se"]} for n, r in vae[latent].items()]
        caption = (f"(b) {latent} VAE ({vae['evaluations_per_step']} evaluations per data point "
                   f"and gradient estimate, two estimates per step, so variances compare at equal "
                   f"evaluations; the ELBO of a model that ignores its code: "
                   f"{vae['marginal_elbo']:.2f}).")
        tables += [caption, _common.markdown_table(rows, cols)]
    return "\n\n".join(tables)


def _define_flags() -> None:
    _common.define_common_flags("results/discrete_estimators")
    _common.define_size_flags(QUICK, FULL)
    flags.DEFINE_bool("full", False, "The paper-scale budget; the default unless --quick.")
    flags.adopt_module_key_flags(_common)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    fv = flags.FLAGS
    if fv.quick and fv.full:
        raise app.UsageError("--quick and --full exclude each other")
    out = _common.output_dir_or_exit(fv.output_dir, fv.overwrite)
    results = run(out, quick=fv.quick, seed=fv.seed, **_common.sizes_from_flags(Sizes, fv))
    print(results["verdict"]["line"])
    print(f"wrote {out}")


if __name__ == "__main__":
    _define_flags()
    app.run(main)
