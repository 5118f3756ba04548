"""gradest: Monte Carlo gradient estimators as pure, jit-compiled, vmapped JAX functions.

Every estimator returns a per-sample scalar surrogate whose value is the Monte Carlo sample of the
objective and whose gradient is that sample's gradient estimate (see ``gradest._core``).
"""

from gradest import baselines, diagnostics, testing
from gradest.arm import arm, disarm
from gradest._core import (EstimatorError, GradientEstimator, Traits, check_compatible,
                           is_discrete)
from gradest.control_variates import control_variate, delta_method
from gradest.diagnostics import GradientStats, gradient_stats
from gradest.enumeration import exact_enumeration
from gradest.distributions import Bernoulli, StudentT, TanhNormal
from gradest.estimate import Estimate, batch_surrogate, estimate_grad, per_sample_grads
from gradest.gumbel import (exponential_anneal, constant_temperature, gumbel_max_sample,
                            gumbel_softmax, gumbel_softmax_sample, straight_through)
from gradest.gumbel_rao import gumbel_rao
from gradest.measure_valued import measure_valued
from gradest.pathwise import pathwise
from gradest.rebar import (ControlVariate, RelaxState, rebar, rebar_control_variate, relax,
                           relax_control_variate)
from gradest.score_function import LikelihoodRatioStats, likelihood_ratio_loss, score_function
from gradest.unordered_set import unordered_set
from gradest.zeroth_order import zeroth_order

__version__ = "0.1.0"

__all__ = [
    "EstimatorError", "GradientEstimator", "Traits", "check_compatible", "is_discrete",
    "baselines", "diagnostics", "testing", "GradientStats", "gradient_stats",
    "control_variate", "delta_method", "measure_valued",
    "exact_enumeration", "Bernoulli", "StudentT", "TanhNormal",
    "Estimate", "batch_surrogate", "estimate_grad", "per_sample_grads",
    "exponential_anneal", "constant_temperature", "gumbel_max_sample", "gumbel_softmax",
    "gumbel_softmax_sample", "straight_through",
    "pathwise", "LikelihoodRatioStats", "likelihood_ratio_loss", "score_function",
    "zeroth_order", "arm", "disarm", "gumbel_rao", "unordered_set", "ControlVariate",
    "RelaxState", "rebar", "rebar_control_variate", "relax", "relax_control_variate",
]
