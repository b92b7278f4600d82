// The C++ (CPU) backend of gac_coding's neuron ops: the multi-step LIF and the LIF fused with the
// GAC gate, forward and backward, for float32/float64 contiguous tensors.
//
// The same floating-point operations in the same order as the eager backend (compiled with
// -ffp-contract=off): the spikes agree exactly with it, the gradients to float rounding (ATen's
// vectorised addcmul fuses a multiply-add, this code does not). Work is split over elements with
// ATen's parallel_for; grad_ta of the gated op is a sum of per-chunk partial sums (in double) added
// in a fixed order after the parallel pass, so no result depends on the number of threads.
//
// Membrane: h_0 = x_0, h_t = x_t + (decay h_{t-1}) [h_{t-1} <= th]; spike s_t = [h_t > th].
// Surrogate codes: 0 triangle max(0, 1 - |h - th|), 1 rectangle [|h - th| < 0.5].

#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

namespace {

// Elements of one step handled together: the membrane of a chunk stays in a local buffer while
// the loop walks the steps, and the inner loop over a chunk is contiguous (vectorisable).
constexpr int64_t kChunk = 512;
// Below this many elements per step, one thread.
constexpr int64_t kGrain = 16384;

// One step of the membrane of a chunk of n elements, in place in hp (h_{t-1} on entry, h_t on
// exit); also stored to ht when given (the pre-spike membrane saved for the backward pass).
// The three buffers never overlap (restrict: the loops vectorise without alias checks).
template <typename scalar_t>
inline void membrane_step(scalar_t* __restrict__ hp, const scalar_t* __restrict__ xt,
                          scalar_t* __restrict__ ht, int64_t n, bool first, scalar_t decay,
                          scalar_t th) {
  if (first) {
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
  if (ht != nullptr) {
    for (int64_t i = 0; i < n; ++i) {
      ht[i] = hp[i];
    }
  }
}

// dL/dh_t of one element from dL/ds_t (grad_s) and g = dL/dh_{t+1} (unused at the last step):
// dL/ds_t = grad_s - decay g h_t (the reset path, dropped when detached);
// dL/dh_t = dL/ds_t * surrogate(h_t - th) + decay g keep_t, keep_t = 1 - s_t = [h_t <= th].
template <typename scalar_t, int kSurrogate, bool kDetach>
inline scalar_t lif_grad_h(scalar_t grad_s, scalar_t g, scalar_t hv, scalar_t th, scalar_t decay,
                           bool last) {
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
  const scalar_t gsv = kDetach ? grad_s : grad_s + (-decay * g) * hv;
  const scalar_t keep = hv <= th ? scalar_t(1) : scalar_t(0);
  return gsv * sg + (decay * g) * keep;
}

// Calls f(surrogate, detach) with both as compile-time constants (std::integral_constant).
template <typename F>
inline void with_grad_mode(int64_t surrogate, bool detach_reset, F&& f) {
  using Tri = std::integral_constant<int, 0>;
  using Rect = std::integral_constant<int, 1>;
  if (surrogate == 0) {
    detach_reset ? f(Tri{}, std::true_type{}) : f(Tri{}, std::false_type{});
  } else {
    detach_reset ? f(Rect{}, std::true_type{}) : f(Rect{}, std::false_type{});
  }
}

// A gradient of a static input (one step standing for T) is the sum over the steps, walked from
// the last: the last step writes, the others add.
template <typename scalar_t>
inline void store_grad(scalar_t* p, scalar_t v, bool accumulate) {
  *p = accumulate ? *p + v : v;
}

template <typename scalar_t>
void forward_range(const scalar_t* x, scalar_t* s, scalar_t* h, int64_t T, int64_t N,
                   bool is_static, scalar_t decay, scalar_t th, int64_t begin, int64_t end) {
  scalar_t hp[kChunk];
  for (int64_t c0 = begin; c0 < end; c0 += kChunk) {
    const int64_t n = std::min(kChunk, end - c0);
    for (int64_t t = 0; t < T; ++t) {
      const scalar_t* xt = x + (is_static ? 0 : t * N) + c0;
      membrane_step(hp, xt, h == nullptr ? nullptr : h + t * N + c0, n, t == 0, decay, th);
      scalar_t* st = s + t * N + c0;
      for (int64_t i = 0; i < n; ++i) {
        st[i] = hp[i] > th ? scalar_t(1) : scalar_t(0);
      }
    }
  }
}

template <typename scalar_t, int kSurrogate, bool kDetach>
void backward_range(const scalar_t* gs, const scalar_t* h, scalar_t* gx, int64_t T, int64_t N,
                    bool is_static, scalar_t decay, scalar_t th, int64_t begin, int64_t end) {
  scalar_t g[kChunk];
  for (int64_t c0 = begin; c0 < end; c0 += kChunk) {
    const int64_t n = std::min(kChunk, end - c0);
    for (int64_t t = T - 1; t >= 0; --t) {
      const scalar_t* gst = gs + t * N + c0;
      const scalar_t* ht = h + t * N + c0;
      scalar_t* out = gx + (is_static ? 0 : t * N) + c0;
      const bool last = t == T - 1;
      for (int64_t i = 0; i < n; ++i) {
        g[i] = lif_grad_h<scalar_t, kSurrogate, kDetach>(gst[i], g[i], ht[i], th, decay, last);
        store_grad(out + i, g[i], is_static && !last);
      }
    }
  }
}

void check_input(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu(), name, ": expected a CPU tensor");
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, name,
              ": expected float32 or float64");
}

void check_surrogate(int64_t surrogate) {
  TORCH_CHECK(surrogate == 0 || surrogate == 1, "surrogate: expected 0 or 1");
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
  check_surrogate(surrogate);
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
    with_grad_mode(surrogate, detach_reset, [&](auto sur, auto det) {
      at::parallel_for(0, N, kGrain, [&](int64_t b, int64_t e) {
        backward_range<scalar_t, decltype(sur)::value, decltype(det)::value>(
            gp, hp, op, T, N, is_static, dc, th, b, e);
      });
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
      const int64_t off = t * N + it.start;
      const scalar_t* ut = u + (u_static ? 0 : t * N) + it.start;
      const scalar_t* st = sca + (sca_static ? 0 : t * N) + it.start;
      const scalar_t tav = ta[t * B + it.b];
      membrane_step(hp, ut, h == nullptr ? nullptr : h + off, n, t == 0, decay, th);
      for (int64_t i = 0; i < n; ++i) {
        const scalar_t s = hp[i] > th ? scalar_t(1) : scalar_t(0);
        const scalar_t m = sigmoid_of(st[i] * tav);
        fired[off + i] = s;
        gate[off + i] = m;
        out[off + i] = m * s;
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
  scalar_t g[kChunk];
  for (int64_t k = k0; k < k1; ++k) {
    const GatedItem it = gated_item(k, P, per_b);
    const int64_t n = it.n;
    for (int64_t t = T - 1; t >= 0; --t) {
      const int64_t off = t * N + it.start;
      const scalar_t* st = sca + (sca_static ? 0 : t * N) + it.start;
      scalar_t* gut = gu + (u_static ? 0 : t * N) + it.start;
      scalar_t* gst = gsca + (sca_static ? 0 : t * N) + it.start;
      const scalar_t tav = ta[t * B + it.b];
      const bool last = t == T - 1;
      double acc = 0.0;
      for (int64_t i = 0; i < n; ++i) {
        const scalar_t m = gate[off + i];
        const scalar_t grad_s = dout[off + i] * m;
        // d out / d z = s m (1 - m) with z = ta * sca, and s m = out
        const scalar_t prod = dout[off + i] * out[off + i];
        const scalar_t grad_z = prod + (scalar_t(-1) * prod) * m;
        acc += static_cast<double>(grad_z * st[i]);
        store_grad(gst + i, grad_z * tav, sca_static && !last);
        g[i] = lif_grad_h<scalar_t, kSurrogate, kDetach>(grad_s, g[i], h[off + i], th, decay, last);
        store_grad(gut + i, g[i], u_static && !last);
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

// The work split of the gated kernels: P elements per sample, items of at most kChunk of them.
struct GatedSplit {
  int64_t B, P, per_b, items;
};

inline GatedSplit gated_split(const at::Tensor& ta, int64_t N) {
  const int64_t B = ta.size(1);
  const int64_t P = N / B;
  const int64_t per_b = (P + kChunk - 1) / kChunk;
  return {B, P, per_b, B * per_b};
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
  const GatedSplit sp = gated_split(ta, N);
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
    const scalar_t* scp = sca.data_ptr<scalar_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    scalar_t* fp = fired.data_ptr<scalar_t>();
    scalar_t* gp = gate.data_ptr<scalar_t>();
    scalar_t* hp = save ? h.data_ptr<scalar_t>() : nullptr;
    const scalar_t dc = static_cast<scalar_t>(decay);
    const scalar_t th = static_cast<scalar_t>(threshold);
    at::parallel_for(0, sp.items, kGrain / kChunk, [&](int64_t k0, int64_t k1) {
      gated_forward_items<scalar_t>(up, tp, scp, op, fp, gp, hp, T, sp.B, sp.P, u_static,
                                    sca_static, dc, th, sp.per_b, k0, k1);
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
  check_surrogate(surrogate);
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
  const GatedSplit sp = gated_split(ta, N);
  at::Tensor gu = u_static ? at::empty(h.sizes().slice(1), h.options()) : at::empty_like(h);
  at::Tensor gsca = at::empty_like(sca);
  at::Tensor partial = at::empty({T, sp.items}, h.options().dtype(at::kDouble));
  at::Tensor gta = at::empty({T, sp.B}, h.options());
  AT_DISPATCH_FLOATING_TYPES(h.scalar_type(), "gac_gated_backward", [&] {
    const scalar_t* dp = dout.data_ptr<scalar_t>();
    const scalar_t* hp = h.data_ptr<scalar_t>();
    const scalar_t* op = out.data_ptr<scalar_t>();
    const scalar_t* mp = gate.data_ptr<scalar_t>();
    const scalar_t* tp = ta.data_ptr<scalar_t>();
    const scalar_t* scp = sca.data_ptr<scalar_t>();
    scalar_t* gup = gu.data_ptr<scalar_t>();
    scalar_t* gsp = gsca.data_ptr<scalar_t>();
    double* pp = partial.data_ptr<double>();
    const scalar_t dc = static_cast<scalar_t>(decay);
    const scalar_t th = static_cast<scalar_t>(threshold);
    with_grad_mode(surrogate, detach_reset, [&](auto sur, auto det) {
      at::parallel_for(0, sp.items, kGrain / kChunk, [&](int64_t k0, int64_t k1) {
        gated_backward_items<scalar_t, decltype(sur)::value, decltype(det)::value>(
            dp, hp, op, mp, tp, scp, gup, gsp, pp, T, sp.B, sp.P, u_static, sca_static, dc, th,
            sp.per_b, sp.items, k0, k1);
      });
    });
    // grad_ta[t, b]: the items' partial sums added in a fixed order (independent of the threads)
    scalar_t* gtp = gta.data_ptr<scalar_t>();
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t b = 0; b < sp.B; ++b) {
        double acc = 0.0;
        for (int64_t j = 0; j < sp.per_b; ++j) acc += pp[t * sp.items + b * sp.per_b + j];
        gtp[t * sp.B + b] = static_cast<scalar_t>(acc);
      }
    }
  });
  return {gu, gta, gsca};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("lif_forward", &lif_forward, "multi-step LIF forward: (spikes, h or None)");
  m.def("lif_backward", &lif_backward, "multi-step LIF backward: grad_x");
  m.def("gated_forward", &gated_forward, "LIF + GAC gate forward: (out, fired, gate, h or None)");
  m.def("gated_backward", &gated_backward, "LIF + GAC gate backward: (grad_u, grad_ta, grad_sca)");
}
