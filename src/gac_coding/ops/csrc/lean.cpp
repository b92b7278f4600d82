// The C++ (CPU) backend of gac_coding's lean ops: bit packing of spikes and the multi-step LIF
// that packs its spikes as it writes them, for float32/float64 contiguous tensors.
//
// Bits: a [R, L] tensor is packed per row, 8 elements a byte, element i in bit i % 8 (least
// significant first) of byte i / 8; the padding bits of a row's last byte are 0.
//
// The LIF's membrane arithmetic is that of the neuron ops (ops/csrc/lif.cpp and the eager
// backend), compiled with -ffp-contract=off: h_0 = z_0, h_t = z_t + (decay h_{t-1}) [h_{t-1} <= th],
// spike s_t = [h_t > th]; with a per-channel affine map z = x * alpha[c] + beta[c] first (two
// roundings, as torch's multiply then add). The spikes and membranes equal the eager backend's.
// Work is split over chunks of elements (a multiple of 8, so that no byte is shared) with ATen's
// parallel_for: the results do not depend on the number of threads.

#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace {

constexpr int64_t kChunk = 512;  // elements of a step walked together (a multiple of 8)
constexpr int64_t kGrain = 16384;

void check_float(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu(), name, ": expected a CPU tensor");
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, name,
              ": expected float32 or float64");
}

inline int64_t bytes_of(int64_t L) { return (L + 7) / 8; }

// Pack n elements (n <= kChunk, starting at an element that is a multiple of 8) into out.
template <typename scalar_t>
inline void pack_run(const scalar_t* v, int64_t n, uint8_t* out) {
  for (int64_t j = 0; j < bytes_of(n); ++j) {
    uint8_t byte = 0;
    const int64_t end = std::min<int64_t>(8, n - 8 * j);
    for (int64_t k = 0; k < end; ++k) {
      byte |= static_cast<uint8_t>(v[8 * j + k] != scalar_t(0)) << k;
    }
    out[j] = byte;
  }
}

}  // namespace

at::Tensor pack_bits(const at::Tensor& x_in) {
  check_float(x_in, "x");
  TORCH_CHECK(x_in.dim() == 2, "x: expected [R, L]");
  const at::Tensor x = x_in.contiguous();
  const int64_t R = x.size(0), L = x.size(1), L8 = bytes_of(L);
  at::Tensor out = at::empty({R, L8}, x.options().dtype(at::kByte));
  const int64_t per_row = (L + kChunk - 1) / kChunk;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "gac_pack_bits", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    uint8_t* op = out.data_ptr<uint8_t>();
    at::parallel_for(0, R * per_row, kGrain / kChunk, [&](int64_t k0, int64_t k1) {
      for (int64_t k = k0; k < k1; ++k) {
        const int64_t r = k / per_row, c0 = (k % per_row) * kChunk;
        pack_run(xp + r * L + c0, std::min(kChunk, L - c0), op + r * L8 + c0 / 8);
      }
    });
  });
  return out;
}

at::Tensor unpack_bits(const at::Tensor& bits_in, int64_t L, at::ScalarType dtype) {
  TORCH_CHECK(bits_in.device().is_cpu() && bits_in.scalar_type() == at::kByte && bits_in.dim() == 2,
              "bits: expected a uint8 CPU tensor [R, L8]");
  TORCH_CHECK(bytes_of(L) == bits_in.size(1), "L: does not match the bytes per row");
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble, "dtype: expected float32 or float64");
  const at::Tensor bits = bits_in.contiguous();
  const int64_t R = bits.size(0), L8 = bits.size(1);
  at::Tensor out = at::empty({R, L}, bits.options().dtype(dtype));
  AT_DISPATCH_FLOATING_TYPES(dtype, "gac_unpack_bits", [&] {
    const uint8_t* bp = bits.data_ptr<uint8_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    at::parallel_for(0, R * L8, kGrain / 8, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t r = b / L8, j = b % L8;
        const uint8_t byte = bp[b];
        const int64_t end = std::min<int64_t>(8, L - 8 * j);
        scalar_t* row = op + r * L + 8 * j;
        for (int64_t k = 0; k < end; ++k) {
          row[k] = static_cast<scalar_t>((byte >> k) & 1);
        }
      }
    });
  });
  return out;
}

std::vector<at::Tensor> lif_forward_packed(const at::Tensor& x_in, int64_t steps,
                                           const c10::optional<at::Tensor>& alpha_in,
                                           const c10::optional<at::Tensor>& beta_in,
                                           int64_t channels, int64_t inner, double decay,
                                           double threshold, bool want_sg, bool want_h) {
  check_float(x_in, "x");
  const at::Tensor x = x_in.contiguous();
  const bool is_static = steps > 0;
  const int64_t T = is_static ? steps : x.size(0);
  const int64_t L = is_static ? x.numel() : (T > 0 ? x.numel() / T : 0);
  const int64_t L8 = bytes_of(L);
  const bool affine = alpha_in.has_value() && beta_in.has_value();
  at::Tensor alpha, beta;
  if (affine) {
    TORCH_CHECK(channels > 0 && inner > 0 && L % (channels * inner) == 0,
                "channels, inner: do not divide a step");
    alpha = alpha_in->to(x.scalar_type()).contiguous();
    beta = beta_in->to(x.scalar_type()).contiguous();
    TORCH_CHECK(alpha.numel() == channels && beta.numel() == channels, "alpha, beta: expected [C]");
  }
  at::Tensor spikes = at::empty({T, L}, x.options());
  at::Tensor bits = at::empty({T, L8}, x.options().dtype(at::kByte));
  at::Tensor sg = want_sg ? at::empty({T, L8}, x.options().dtype(at::kByte)) : at::Tensor();
  at::Tensor h = want_h ? at::empty({T, L}, x.options()) : at::Tensor();
  const int64_t chunks = (L + kChunk - 1) / kChunk;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "gac_lif_forward_packed", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const scalar_t* ap = affine ? alpha.data_ptr<scalar_t>() : nullptr;
    const scalar_t* bp = affine ? beta.data_ptr<scalar_t>() : nullptr;
    scalar_t* sp = spikes.data_ptr<scalar_t>();
    uint8_t* bitp = bits.data_ptr<uint8_t>();
    uint8_t* sgp = want_sg ? sg.data_ptr<uint8_t>() : nullptr;
    scalar_t* hp = want_h ? h.data_ptr<scalar_t>() : nullptr;
    const scalar_t dc = static_cast<scalar_t>(decay);
    const scalar_t th = static_cast<scalar_t>(threshold);
    at::parallel_for(0, chunks, kGrain / kChunk, [&](int64_t k0, int64_t k1) {
      scalar_t mem[kChunk];
      scalar_t z[kChunk];
      scalar_t win[kChunk];
      for (int64_t k = k0; k < k1; ++k) {
        const int64_t c0 = k * kChunk;
        const int64_t n = std::min(kChunk, L - c0);
        for (int64_t t = 0; t < T; ++t) {
          const scalar_t* xt = xp + (is_static ? 0 : t * L) + c0;
          if (affine) {
            for (int64_t i = 0; i < n; ++i) {
              const int64_t c = ((c0 + i) / inner) % channels;
              z[i] = xt[i] * ap[c] + bp[c];
            }
            xt = z;
          }
          if (t == 0) {
            for (int64_t i = 0; i < n; ++i) mem[i] = xt[i];
          } else {
            for (int64_t i = 0; i < n; ++i) {
              const scalar_t keep = mem[i] <= th ? scalar_t(1) : scalar_t(0);
              mem[i] = xt[i] + (dc * mem[i]) * keep;
            }
          }
          scalar_t* st = sp + t * L + c0;
          for (int64_t i = 0; i < n; ++i) st[i] = mem[i] > th ? scalar_t(1) : scalar_t(0);
          pack_run(st, n, bitp + t * L8 + c0 / 8);
          if (hp != nullptr) {
            std::copy(mem, mem + n, hp + t * L + c0);
          }
          if (sgp != nullptr) {
            for (int64_t i = 0; i < n; ++i) {
              win[i] = std::abs(mem[i] - th) < scalar_t(0.5) ? scalar_t(1) : scalar_t(0);
            }
            pack_run(win, n, sgp + t * L8 + c0 / 8);
          }
        }
      }
    });
  });
  return {spikes, bits, sg, h};
}

// The LIF's backward pass for the rectangle surrogate with a detached reset, from the bits of the
// spikes and of the surrogate's window: g_t = grad_s_t * w_t + (decay * g_{t+1}) * (1 - s_t), steps
// in reverse (the operations of ops/csrc/lif.cpp's lif_grad_h in their order).
at::Tensor lif_backward_bits(const at::Tensor& grad_in, const at::Tensor& bits_in,
                             const at::Tensor& sg_in, bool is_static, double decay) {
  check_float(grad_in, "grad_s");
  TORCH_CHECK(grad_in.dim() == 2, "grad_s: expected [T, L]");
  const at::Tensor gs = grad_in.contiguous();
  const at::Tensor bits = bits_in.contiguous();
  const at::Tensor sg = sg_in.contiguous();
  const int64_t T = gs.size(0), L = gs.size(1), L8 = bytes_of(L);
  TORCH_CHECK(bits.scalar_type() == at::kByte && sg.scalar_type() == at::kByte &&
                  bits.numel() == T * L8 && sg.numel() == T * L8,
              "bits, sg: expected uint8 [T, ceil(L / 8)]");
  at::Tensor gx = is_static ? at::empty({L}, gs.options()) : at::empty({T, L}, gs.options());
  const int64_t chunks = (L + kChunk - 1) / kChunk;
  AT_DISPATCH_FLOATING_TYPES(gs.scalar_type(), "gac_lif_backward_bits", [&] {
    const scalar_t* gp = gs.data_ptr<scalar_t>();
    const uint8_t* bp = bits.data_ptr<uint8_t>();
    const uint8_t* wp = sg.data_ptr<uint8_t>();
    scalar_t* op = gx.data_ptr<scalar_t>();
    const scalar_t dc = static_cast<scalar_t>(decay);
    at::parallel_for(0, chunks, kGrain / kChunk, [&](int64_t k0, int64_t k1) {
      scalar_t g[kChunk];
      for (int64_t k = k0; k < k1; ++k) {
        const int64_t c0 = k * kChunk;
        const int64_t n = std::min(kChunk, L - c0);
        for (int64_t t = T - 1; t >= 0; --t) {
          const bool last = t == T - 1;
          const scalar_t* gt = gp + t * L + c0;
          const uint8_t* bt = bp + t * L8;
          const uint8_t* wt = wp + t * L8;
          scalar_t* out = op + (is_static ? 0 : t * L) + c0;
          for (int64_t i = 0; i < n; ++i) {
            const int64_t e = c0 + i;
            const scalar_t fired = static_cast<scalar_t>((bt[e >> 3] >> (e & 7)) & 1);
            const scalar_t window = static_cast<scalar_t>((wt[e >> 3] >> (e & 7)) & 1);
            scalar_t v = gt[i] * window;
            if (!last) {
              v = v + (dc * g[i]) * (scalar_t(1) - fired);
            }
            g[i] = v;
            out[i] = (is_static && !last) ? out[i] + v : v;
          }
        }
      }
    });
  });
  return gx;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("pack_bits", &pack_bits, "pack a [R, L] tensor of 0/1 to uint8 [R, ceil(L / 8)]");
  m.def("unpack_bits", &unpack_bits, "unpack uint8 [R, L8] to [R, L] of 0/1");
  m.def("lif_forward_packed", &lif_forward_packed,
        "multi-step LIF (after an optional per-channel affine map) writing spikes and their bits");
  m.def("lif_backward_bits", &lif_backward_bits,
        "LIF backward (rectangle surrogate, detached reset) from the bits of spikes and window");
}
