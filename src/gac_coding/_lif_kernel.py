"""Optional fused C++ CPU kernel of the multi-step LIF, compiled on first use.

The eager path of :mod:`gac_coding.neuron` runs a handful of elementwise torch operations per time
step, each one a full pass over memory. This module compiles (``torch.utils.cpp_extension``,
C++ only) a kernel that walks ``[T, N]`` once per element in the forward pass (writing the spikes
and, for the backward pass, the pre-spike membrane ``h``) and once in the backward pass (the whole
backward through time inside the kernel, steps in reverse), parallel over ``N`` with ATen's OpenMP.

It performs the same floating-point operations in the same order as the eager path (compiled with
``-ffp-contract=off``): the spikes agree exactly with it and with :func:`gac_coding.neuron.lif_reference`;
the gradients agree to float rounding (ATen's vectorised ``addcmul`` fuses a multiply-add, this
kernel does not).

The same extension holds ``gated_forward`` / ``gated_backward``, the encoder's LIF fused with the GAC
gate (:func:`gac_coding.attention.gated_lif`): ``out_t = sigmoid(ta[t, b] * sca_t) * s_t`` in one pass
forward, and in one pass backward the gradients of ``u``, ``sca`` and ``ta``, a static input or
``sca`` (one step for all ``T``) read in place. They work on chunks of one sample ``b`` each, in
parallel; ``grad_ta[t, b]`` is a sum of per-chunk partial sums (in double) added in a fixed order
after the parallel pass, so the results do not depend on the number of threads. The gate's sigmoid
is ``1 / (1 + exp(-z))``, within an ulp of ATen's.

Nothing here runs at import: :func:`load` compiles (or loads torch's cached build) on the first
call, and a failure is remembered, so that the caller can fall back to the eager path for the rest
of the process.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import threading
from types import ModuleType

__all__ = ["SURROGATE_CODES", "build_error", "is_built", "load", "toolchain_available"]

#: Integer codes of the surrogates the kernel knows; other surrogates use the eager path.
SURROGATE_CODES: dict[str, int] = {"triangle": 0, "rectangle": 1}

_SOURCE = r"""
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace {

// Elements of one step handled together: the membrane of a chunk stays in a local buffer while
// the loop walks the steps, and the inner loop over a chunk is contiguous (vectorisable).
constexpr int64_t kChunk = 512;
// Below this many elements per step, one thread.
constexpr int64_t kGrain = 16384;

template <typename scalar_t>
void forward_range(const scalar_t* x, scalar_t* s, scalar_t* h, int64_t T, int64_t N,
                   bool is_static, scalar_t decay, scalar_t th, int64_t begin, int64_t end) {
  scalar_t hp[kChunk];
  for (int64_t c0 = begin; c0 < end; c0 += kChunk) {
    const int64_t n = std::min(kChunk, end - c0);
    for (int64_t t = 0; t < T; ++t) {
      const scalar_t* xt = x + (is_static ? 0 : t * N) + c0;
      scalar_t* st = s + t * N + c0;
      if (t == 0) {
        for (int64_t i = 0; i < n; ++i) {
          hp[i] = xt[i];
        }
      } else {
        // h_t = x_t + (decay * h_{t-1}) * keep_{t-1}, keep = [h <= th]: the eager addcmul
        for (int64_t i = 0; i < n; ++i) {
          const scalar_t keep = hp[i] <= th ? scalar_t(1) : scalar_t(0);
          hp[i] = xt[i] + (decay * hp[i]) * keep;
        }
      }
      for (int64_t i = 0; i < n; ++i) {
        st[i] = hp[i] > th ? scalar_t(1) : scalar_t(0);
      }
      if (h != nullptr) {
        scalar_t* ht = h + t * N + c0;
        for (int64_t i = 0; i < n; ++i) {
          ht[i] = hp[i];
        }
      }
    }
  }
}

// dL/dh_t of one element from dL/ds_t (grad_s) and g = dL/dh_{t+1} (unused at the last step):
// dL/ds_t = grad_s - decay g h_t (the reset path, dropped when detached);
// dL/dh_t = dL/ds_t * surrogate(h_t - th) + decay g keep_t, keep_t = 1 - s_t = [h_t <= th].
template <typename scalar_t, int kSurrogate, bool kDetach>
inline scalar_t lif_grad_h(scalar_t grad_s, scalar_t g, scalar_t hv, scalar_t th, scalar_t decay,
                           scalar_t ndecay, bool last) {
  const scalar_t d = hv - th;
  scalar_t sg;
  if (kSurrogate == 0) {
    const scalar_t a = scalar_t(1) - std::abs(d);
    sg = a < scalar_t(0) ? scalar_t(0) : a;
  } else {
    sg = std::abs(d) < scalar_t(0.5) ? scalar_t(1) : scalar_t(0);
  }
  if (last) {
    return grad_s * sg;
  }
  const scalar_t gsv = kDetach ? grad_s : grad_s + (ndecay * g) * hv;
  const scalar_t keep = hv <= th ? scalar_t(1) : scalar_t(0);
  return gsv * sg + (decay * g) * keep;
}

template <typename scalar_t, int kSurrogate, bool kDetach>
void backward_range(const scalar_t* gs, const scalar_t* h, scalar_t* gx, int64_t T, int64_t N,
                    bool is_static, scalar_t decay, scalar_t th, int64_t begin, int64_t end) {
  scalar_t g[kChunk];
  const scalar_t ndecay = -decay;
  for (int64_t c0 = begin; c0 < end; c0 += kChunk) {
    const int64_t n = std::min(kChunk, end - c0);
    for (int64_t t = T - 1; t >= 0; --t) {
      const scalar_t* gst = gs + t * N + c0;
      const scalar_t* ht = h + t * N + c0;
      scalar_t* out = gx + (is_static ? 0 : t * N) + c0;
      const bool last = t == T - 1;
      for (int64_t i = 0; i < n; ++i) {
        const scalar_t r =
            lif_grad_h<scalar_t, kSurrogate, kDetach>(gst[i], g[i], ht[i], th, decay, ndecay, last);
        g[i] = r;
        if (is_static && !last) {
          out[i] = out[i] + r;
        } else {
          out[i] = r;
        }
      }
    }
  }
}

void check_input(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu(), name, ": expected a CPU tensor");
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, name,
              ": expected float32 or float64");
}

}  // namespace

std::vector<at::Tensor> lif_forward(const at::Tensor& x_in, int64_t steps, double decay,
                                    double threshold, bool save) {
  check_input(x_in, "x");
  const at::Tensor x = x_in.contiguous();
  const bool is_static = steps > 0;
  const int64_t T = is_static ? steps : x.size(0);
  const int64_t N = is_static ? x.numel() : (T > 0 ? x.numel() / T : 0);
  std::vector<int64_t> shape;
  if (is_static) shape.push_back(T);
  for (int64_t d : x.sizes()) shape.push_back(d);
  at::Tensor s = at::empty(shape, x.options());
  at::Tensor h = save ? at::empty(shape, x.options()) : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "gac_lif_forward", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    scalar_t* sp = s.data_ptr<scalar_t>();
    scalar_t* hp = save ? h.data_ptr<scalar_t>() : nullptr;
    const scalar_t dc = static_cast<scalar_t>(decay);
    const scalar_t th = static_cast<scalar_t>(threshold);
    at::parallel_for(0, N, kGrain, [&](int64_t b, int64_t e) {
      forward_range<scalar_t>(xp, sp, hp, T, N, is_static, dc, th, b, e);
    });
  });
  return {s, h};
}

at::Tensor lif_backward(const at::Tensor& grad_in, const at::Tensor& h_in, bool is_static,
                        double decay, double threshold, int64_t surrogate, bool detach_reset) {
  check_input(h_in, "h");
  TORCH_CHECK(surrogate == 0 || surrogate == 1, "surrogate: expected 0 or 1");
  const at::Tensor h = h_in.contiguous();
  const at::Tensor gs = grad_in.to(h.scalar_type()).contiguous();
  TORCH_CHECK(gs.sizes() == h.sizes(), "grad: expected the shape of h");
  const int64_t T = h.size(0);
  const int64_t N = T > 0 ? h.numel() / T : 0;
  at::Tensor gx = is_static ? at::empty(h.sizes().slice(1), h.options()) : at::empty_like(h);
  AT_DISPATCH_FLOATING_TYPES(h.scalar_type(), "gac_lif_backward", [&] {
    const scalar_t* gp = gs.data_ptr<scalar_t>();
    const scalar_t* hp = h.data_ptr<scalar_t>();
    scalar_t* op = gx.data_ptr<scalar_t>();
    const scalar_t dc = static_cast<scalar_t>(decay);
    const scalar_t th = static_cast<scalar_t>(threshold);
    at::parallel_for(0, N, kGrain, [&](int64_t b, int64_t e) {
      if (surrogate == 0 && detach_reset) {
        backward_range<scalar_t, 0, true>(gp, hp, op, T, N, is_static, dc, th, b, e);
      } else if (surrogate == 0) {
        backward_range<scalar_t, 0, false>(gp, hp, op, T, N, is_static, dc, th, b, e);
      } else if (detach_reset) {
        backward_range<scalar_t, 1, true>(gp, hp, op, T, N, is_static, dc, th, b, e);
      } else {
        backward_range<scalar_t, 1, false>(gp, hp, op, T, N, is_static, dc, th, b, e);
      }
    });
  });
  return gx;
}

// ---------------------------------------------------------------------------------------------
// The GAC gate fused with the LIF: out_t = sigmoid(ta[t, b] * sca_t) * s_t.
// ---------------------------------------------------------------------------------------------

namespace {

// Work item k of the gated kernels: a chunk of at most kChunk elements of one sample b (a chunk
// never spans two samples), elements [b * P + c0, b * P + c0 + n) of each step.
struct GatedItem {
  int64_t b;
  int64_t start;
  int64_t n;
};

inline GatedItem gated_item(int64_t k, int64_t P, int64_t per_b) {
  const int64_t b = k / per_b;
  const int64_t c0 = (k % per_b) * kChunk;
  return {b, b * P + c0, std::min(kChunk, P - c0)};
}

template <typename scalar_t>
inline scalar_t sigmoid_of(scalar_t z) {
  return scalar_t(1) / (scalar_t(1) + std::exp(-z));
}

template <typename scalar_t>
void gated_forward_items(const scalar_t* u, const scalar_t* ta, const scalar_t* sca, scalar_t* out,
                         scalar_t* fired, scalar_t* gate, scalar_t* h, int64_t T, int64_t B,
                         int64_t P, bool u_static, bool sca_static, scalar_t decay, scalar_t th,
                         int64_t per_b, int64_t k0, int64_t k1) {
  const int64_t N = B * P;
  scalar_t hp[kChunk];
  for (int64_t k = k0; k < k1; ++k) {
    const GatedItem it = gated_item(k, P, per_b);
    const int64_t n = it.n;
    for (int64_t t = 0; t < T; ++t) {
      const scalar_t* ut = u + (u_static ? 0 : t * N) + it.start;
      const scalar_t* st = sca + (sca_static ? 0 : t * N) + it.start;
      const scalar_t tav = ta[t * B + it.b];
      scalar_t* ot = out + t * N + it.start;
      scalar_t* ft = fired + t * N + it.start;
      scalar_t* gt = gate + t * N + it.start;
      if (t == 0) {
        for (int64_t i = 0; i < n; ++i) {
          hp[i] = ut[i];
        }
      } else {
        for (int64_t i = 0; i < n; ++i) {
          const scalar_t keep = hp[i] <= th ? scalar_t(1) : scalar_t(0);
          hp[i] = ut[i] + (decay * hp[i]) * keep;
        }
      }
      for (int64_t i = 0; i < n; ++i) {
        const scalar_t s = hp[i] > th ? scalar_t(1) : scalar_t(0);
        const scalar_t m = sigmoid_of(st[i] * tav);
        ft[i] = s;
        gt[i] = m;
        ot[i] = m * s;
      }
      if (h != nullptr) {
        scalar_t* ht = h + t * N + it.start;
        for (int64_t i = 0; i < n; ++i) {
          ht[i] = hp[i];
        }
      }
    }
  }
}

// partial[t * items + k]: the sum over item k's elements of grad_z * sca at step t, in double.
template <typename scalar_t, int kSurrogate, bool kDetach>
void gated_backward_items(const scalar_t* dout, const scalar_t* h, const scalar_t* out,
                          const scalar_t* gate, const scalar_t* ta, const scalar_t* sca,
                          scalar_t* gu, scalar_t* gsca, double* partial, int64_t T, int64_t B,
                          int64_t P, bool u_static, bool sca_static, scalar_t decay, scalar_t th,
                          int64_t per_b, int64_t items, int64_t k0, int64_t k1) {
  const int64_t N = B * P;
  const scalar_t ndecay = -decay;
  scalar_t g[kChunk];
  for (int64_t k = k0; k < k1; ++k) {
    const GatedItem it = gated_item(k, P, per_b);
    const int64_t n = it.n;
    for (int64_t t = T - 1; t >= 0; --t) {
      const int64_t off = t * N + it.start;
      const scalar_t* dt = dout + off;
      const scalar_t* ht = h + off;
      const scalar_t* ot = out + off;
      const scalar_t* mt = gate + off;
      const scalar_t* st = sca + (sca_static ? 0 : t * N) + it.start;
      scalar_t* gut = gu + (u_static ? 0 : t * N) + it.start;
      scalar_t* gst = gsca + (sca_static ? 0 : t * N) + it.start;
      const scalar_t tav = ta[t * B + it.b];
      const bool last = t == T - 1;
      double acc = 0.0;
      for (int64_t i = 0; i < n; ++i) {
        const scalar_t m = mt[i];
        const scalar_t grad_s = dt[i] * m;
        // d out / d z = s m (1 - m) with z = ta * sca, and s m = out
        const scalar_t prod = dt[i] * ot[i];
        const scalar_t grad_z = prod + (scalar_t(-1) * prod) * m;
        acc += static_cast<double>(grad_z * st[i]);
        const scalar_t gz_ta = grad_z * tav;
        if (sca_static && !last) {
          gst[i] = gst[i] + gz_ta;
        } else {
          gst[i] = gz_ta;
        }
        const scalar_t r =
            lif_grad_h<scalar_t, kSurrogate, kDetach>(grad_s, g[i], ht[i], th, decay, ndecay, last);
        g[i] = r;
        if (u_static && !last) {
          gut[i] = gut[i] + r;
        } else {
          gut[i] = r;
        }
      }
      partial[t * items + k] = acc;
    }
  }
}

void check_gated(const at::Tensor& u, const at::Tensor& ta, const at::Tensor& sca, int64_t T,
                 int64_t N) {
  TORCH_CHECK(ta.dim() == 2 && ta.size(0) == T, "ta: expected [T, B]");
  TORCH_CHECK(ta.scalar_type() == u.scalar_type() && sca.scalar_type() == u.scalar_type(),
              "ta, sca: expected the dtype of u");
  TORCH_CHECK(sca.numel() == N || sca.numel() == T * N, "sca: expected one step or T steps");
  TORCH_CHECK(ta.size(1) > 0 && N % ta.size(1) == 0, "ta: batch size does not divide a step");
}

}  // namespace

std::vector<at::Tensor> gated_forward(const at::Tensor& u_in, const at::Tensor& ta_in,
                                      const at::Tensor& sca_in, int64_t steps, double decay,
                                      double threshold, bool save) {
  check_input(u_in, "u");
  const at::Tensor u = u_in.contiguous();
  const at::Tensor ta = ta_in.contiguous();
  const at::Tensor sca = sca_in.contiguous();
  const bool u_static = steps > 0;
  const int64_t T = ta.size(0);
  TORCH_CHECK(u_static || (u.dim() > 0 && u.size(0) == T), "u: expected T steps");
  const int64_t N = u_static ? u.numel() : (T > 0 ? u.numel() / T : 0);
  check_gated(u, ta, sca, T, N);
  // one step of sca (the same at every step) or T steps; with T = 1 both read the same memory
  const bool sca_static = sca.numel() == N;
  const int64_t B = ta.size(1);
  const int64_t P = N / B;
  const int64_t per_b = (P + kChunk - 1) / kChunk;
  const int64_t items = B * per_b;
  std::vector<int64_t> shape;
  shape.push_back(T);
  auto step = u.sizes();
  for (size_t d = u_static ? 0 : 1; d < step.size(); ++d) shape.push_back(step[d]);
  at::Tensor out = at::empty(shape, u.options());
  at::Tensor fired = at::empty(shape, u.options());
  at::Tensor gate = at::empty(shape, u.options());
  at::Tensor h = save ? at::empty(shape, u.options()) : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES(u.scalar_type(), "gac_gated_forward", [&] {
    const scalar_t* up = u.data_ptr<scalar_t>();
    const scalar_t* tp = ta.data_ptr<scalar_t>();
    const scalar_t* sp = sca.data_ptr<scalar_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    scalar_t* fp = fired.data_ptr<scalar_t>();
    scalar_t* gp = gate.data_ptr<scalar_t>();
    scalar_t* hp = save ? h.data_ptr<scalar_t>() : nullptr;
    const scalar_t dc = static_cast<scalar_t>(decay);
    const scalar_t th = static_cast<scalar_t>(threshold);
    at::parallel_for(0, items, kGrain / kChunk, [&](int64_t k0, int64_t k1) {
      gated_forward_items<scalar_t>(up, tp, sp, op, fp, gp, hp, T, B, P, u_static, sca_static, dc,
                                    th, per_b, k0, k1);
    });
  });
  return {out, fired, gate, h};
}

std::vector<at::Tensor> gated_backward(const at::Tensor& grad_in, const at::Tensor& h_in,
                                       const at::Tensor& out_in, const at::Tensor& gate_in,
                                       const at::Tensor& ta_in, const at::Tensor& sca_in,
                                       bool u_static, double decay, double threshold,
                                       int64_t surrogate, bool detach_reset) {
  check_input(h_in, "h");
  TORCH_CHECK(surrogate == 0 || surrogate == 1, "surrogate: expected 0 or 1");
  const at::Tensor h = h_in.contiguous();
  const at::Tensor dout = grad_in.to(h.scalar_type()).contiguous();
  const at::Tensor out = out_in.contiguous();
  const at::Tensor gate = gate_in.contiguous();
  const at::Tensor ta = ta_in.contiguous();
  const at::Tensor sca = sca_in.contiguous();
  TORCH_CHECK(dout.sizes() == h.sizes() && out.sizes() == h.sizes() && gate.sizes() == h.sizes(),
              "grad, out, gate: expected the shape of h");
  const int64_t T = h.size(0);
  const int64_t N = T > 0 ? h.numel() / T : 0;
  check_gated(h, ta, sca, T, N);
  const bool sca_static = sca.numel() == N;
  const int64_t B = ta.size(1);
  const int64_t P = N / B;
  const int64_t per_b = (P + kChunk - 1) / kChunk;
  const int64_t items = B * per_b;
  at::Tensor gu = u_static ? at::empty(h.sizes().slice(1), h.options()) : at::empty_like(h);
  at::Tensor gsca = at::empty_like(sca);
  at::Tensor partial = at::empty({T, items}, h.options().dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES(h.scalar_type(), "gac_gated_backward", [&] {
    const scalar_t* dp = dout.data_ptr<scalar_t>();
    const scalar_t* hp = h.data_ptr<scalar_t>();
    const scalar_t* op = out.data_ptr<scalar_t>();
    const scalar_t* mp = gate.data_ptr<scalar_t>();
    const scalar_t* tp = ta.data_ptr<scalar_t>();
    const scalar_t* sp = sca.data_ptr<scalar_t>();
    scalar_t* gup = gu.data_ptr<scalar_t>();
    scalar_t* gsp = gsca.data_ptr<scalar_t>();
    double* pp = partial.data_ptr<double>();
    const scalar_t dc = static_cast<scalar_t>(decay);
    const scalar_t th = static_cast<scalar_t>(threshold);
    at::parallel_for(0, items, kGrain / kChunk, [&](int64_t k0, int64_t k1) {
      auto run = [&](auto kernel) {
        kernel(dp, hp, op, mp, tp, sp, gup, gsp, pp, T, B, P, u_static, sca_static, dc, th, per_b,
               items, k0, k1);
      };
      if (surrogate == 0 && detach_reset) {
        run(gated_backward_items<scalar_t, 0, true>);
      } else if (surrogate == 0) {
        run(gated_backward_items<scalar_t, 0, false>);
      } else if (detach_reset) {
        run(gated_backward_items<scalar_t, 1, true>);
      } else {
        run(gated_backward_items<scalar_t, 1, false>);
      }
    });
  });
  // grad_ta[t, b]: the items' partial sums added in a fixed order (independent of the threads)
  at::Tensor gta = at::empty({T, B}, h.options());
  AT_DISPATCH_FLOATING_TYPES(h.scalar_type(), "gac_gated_grad_ta", [&] {
    const double* pp = partial.data_ptr<double>();
    scalar_t* gp = gta.data_ptr<scalar_t>();
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t b = 0; b < B; ++b) {
        double acc = 0.0;
        for (int64_t j = 0; j < per_b; ++j) acc += pp[t * items + b * per_b + j];
        gp[t * B + b] = static_cast<scalar_t>(acc);
      }
    }
  });
  return {gu, gta, gsca};
}
"""

_FLAGS = ["-O3", "-ffp-contract=off", "-fopenmp"]

_lock = threading.Lock()
_module: ModuleType | None = None
_error: str | None = None


def _name() -> str:
    """Extension name, tied to the source and flags so that an edit never loads a stale build."""
    digest = hashlib.sha256((_SOURCE + " ".join(_FLAGS)).encode()).hexdigest()[:12]
    return f"gac_coding_lif_{digest}"


def _cpp_extension() -> ModuleType:
    """``torch.utils.cpp_extension``, imported without its "No CUDA runtime is found" log line
    (irrelevant here: the kernel is C++ only)."""
    logger = logging.getLogger("torch.utils.cpp_extension")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        import torch.utils.cpp_extension as cpp_extension
    finally:
        logger.setLevel(level)
    return cpp_extension


def _build_dir() -> str:
    return _cpp_extension()._get_build_directory(_name(), verbose=False)


def toolchain_available() -> bool:
    """Whether a C++ compiler and ``ninja`` (which ``torch.utils.cpp_extension`` needs) are found."""
    compiler = os.environ.get("CXX", "c++")
    if shutil.which(compiler) is None:
        return False
    return bool(_cpp_extension().is_ninja_available())


def is_built() -> bool:
    """Whether torch's extension cache already holds a build of this kernel (no compiling)."""
    if _module is not None:
        return True
    try:
        directory = _build_dir()
    except Exception:  # noqa: BLE001 - no cache directory: not built
        return False
    return os.path.isfile(os.path.join(directory, f"{_name()}.so"))


def build_error() -> str | None:
    """Why the last build failed in this process (``None`` if none failed)."""
    return _error


def _summary(exc: BaseException) -> str:
    """The first line of a (possibly long, compiler-output) exception message and the first later
    line that says what went wrong, shortened."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0][:200] if lines else ""
    causes = [line for line in lines[1:] if "error" in line.lower() or "not found" in line.lower()]
    if causes or len(lines) > 1:
        text += " ... " + (causes or lines[-1:])[0][:300]
    return f"{type(exc).__name__}: {text}"


def _compile() -> ModuleType:
    return _cpp_extension().load_inline(
        name=_name(),
        cpp_sources=[_SOURCE],
        functions=["lif_forward", "lif_backward", "gated_forward", "gated_backward"],
        extra_cflags=_FLAGS,
        verbose=False,
    )


def load() -> ModuleType | None:
    """The compiled module (building it on first use), or ``None`` after a failed build.

    A failure is recorded in :func:`build_error` and not retried in this process.
    """
    global _module, _error
    if _module is not None or _error is not None:
        return _module
    with _lock:
        if _module is None and _error is None:
            try:
                _module = _compile()
            except Exception as exc:  # noqa: BLE001 - any failure means: use the eager path
                _error = _summary(exc)
    return _module
