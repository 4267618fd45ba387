"""The compiled training kernels on the CPU: the GRU recurrence (the fast path of :func:`reference.layers._fused_gru`)
and BatchNorm over the valid frames (of :class:`reference.layers.SequenceWiseBatchNorm` and ``MaskedBatchNorm2d``).

Why: a CPU training step of this course's models spends most of its time not in matrix products but
in the thousands of small per-time-step operations around the recurrence, each paying Python's and
torch's dispatch (~10 us) for a few microseconds of work.  DS2 hit the same wall and wrote its own
kernels (section 4: "we wrote our own" GPU kernels for the recurrence and CTC).  Here the whole time
loop of all directions, forward and backward, is one C++ call: per step one matrix product per
direction (``at::addmm_out`` into preallocated buffers) and one hand-written loop over ``B x H`` for
the gates; the backward collects every step's gate gradients so that ``dU`` is one large product
after the loop.  The maths are :class:`reference.layers._GRURecurrence`'s (see there for the
equations), tested equal to the readable loop (tests/test_layers.py).

BatchNorm (:class:`CompiledMaskedBatchNorm`) for another reason: memory traffic.  The Python fast path gathers
the valid frames, runs torch's kernel and scatters the result into zeros, about seven passes forward over a
``T x B x 3H`` projection (12 MB for 32 clips) that does not stay in the caches, and as many backward, most
into freshly allocated memory that the kernel must first fault in.  The compiled one reads the frames where
they lie: two passes for the statistics (mean, then squared deviations, in double), one to write the output
(0 at padding); backward, one for the two sums and one to write the gradient.  Tested against
``nn.BatchNorm1d`` on the gathered valid frames, and by finite differences (tests/test_layers.py).

The extension is compiled on first use (``torch.utils.cpp_extension.load_inline``, ~20 s, cached
under torch's extension folder, ``$TORCH_EXTENSIONS_DIR`` or ``~/.cache/torch_extensions``), never
at import.  No compiler or ninja, a read-only cache, a build failing or taking longer than
``BUILD_TIMEOUT`` seconds: :func:`load` returns ``None`` once, logs one line saying why, and the
Python fast path runs instead.

It is opt-in: ``DS2_GRU_KERNEL=1`` in the environment turns both on (``benchmarks/bench_train_step.py``
does so for its measurements).  Off, the Python fast path runs, silently.  Why not on by default: a
first build costs ~20 s of CPU inside whatever process trains first (a lesson, a grader's sandboxed
check), and the course's default must run the same everywhere; the engineer who trains for an hour
opts in.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import time

import torch

log = logging.getLogger(__name__)

BUILD_TIMEOUT = 240.0        # seconds for the first build (about 20 s of CPU on this course's machines)

CPP_SOURCE = r"""
// Forward and backward of h_t = GRU(gx_t, h_{t-1}) for D directions, h_0 = 0, torch's gate order (r, z, n):
//   r = sigmoid(gx_r + U_r h + b_r)   z = sigmoid(gx_z + U_z h + b_z)
//   n = tanh(gx_n + r (U_n h + b_n))  h' = n + z (h - n)          (= (1 - z) n + z h)
// Layout inside: direction-major (D, T, B, .), so that direction d's steps are one contiguous matrix.
#include <ATen/ATen.h>                      // not <torch/extension.h>: a third of the compile time
#include <ATen/Parallel.h>
#include <torch/csrc/utils/pybind.h>
#include <cmath>
#include <vector>
#if defined(__x86_64__)
#include <immintrin.h>
// The same SLEEF routines (1-ulp) as torch's own sigmoid and tanh on x86, exported by libtorch_cpu.
extern "C" __m256 Sleef_expf8_u10avx2(__m256);
extern "C" __m256 Sleef_tanhf8_u10avx2(__m256);
#endif

namespace {

// In place: x <- sigmoid(x) or tanh(x) over n values.
void sigmoid_scalar(float* x, int64_t n) { for (int64_t i = 0; i < n; ++i) x[i] = 1.f / (1.f + std::exp(-x[i])); }
void sigmoid_scalar(double* x, int64_t n) { for (int64_t i = 0; i < n; ++i) x[i] = 1. / (1. + std::exp(-x[i])); }
template <typename T> void tanh_scalar(T* x, int64_t n) { for (int64_t i = 0; i < n; ++i) x[i] = std::tanh(x[i]); }

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) void sigmoid_avx2(float* x, int64_t n) {
  const __m256 one = _mm256_set1_ps(1.f), zero = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 e = Sleef_expf8_u10avx2(_mm256_sub_ps(zero, _mm256_loadu_ps(x + i)));
    _mm256_storeu_ps(x + i, _mm256_div_ps(one, _mm256_add_ps(one, e)));
  }
  sigmoid_scalar(x + i, n - i);
}
__attribute__((target("avx2,fma"))) void tanh_avx2(float* x, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, Sleef_tanhf8_u10avx2(_mm256_loadu_ps(x + i)));
  tanh_scalar(x + i, n - i);
}
bool detect_avx2() { __builtin_cpu_init(); return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }
const bool has_avx2 = detect_avx2();
#endif

void sigmoid_(float* x, int64_t n) {
#if defined(__x86_64__)
  if (has_avx2) return sigmoid_avx2(x, n);
#endif
  sigmoid_scalar(x, n);
}
void tanh_(float* x, int64_t n) {
#if defined(__x86_64__)
  if (has_avx2) return tanh_avx2(x, n);
#endif
  tanh_scalar(x, n);
}
void sigmoid_(double* x, int64_t n) { sigmoid_scalar(x, n); }
void tanh_(double* x, int64_t n) { tanh_scalar(x, n); }

// Rows (d, b) of one step in parallel (torch's intra-op threads); one row is H units.
template <typename F> void rows(int64_t n_rows, int64_t H, const F& f) {
  at::parallel_for(0, n_rows, std::max<int64_t>(1, 4096 / std::max<int64_t>(H, 1)), [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) f(i);
  });
}

// Direction d = 1 reads and writes each sequence backwards from its own last step: kernel step t of
// sequence b is time step tt = L_b - 1 - t while t < L_b (padded steps stay in place, as reverse_padded does).
inline int64_t time_index(int64_t d, int64_t t, int64_t L) { return (d == 1 && t < L) ? L - 1 - t : t; }

template <typename T>
void forward_steps(const at::Tensor& gx, const int64_t* len, const std::vector<at::Tensor>& U_t, const at::Tensor& bias,
                   at::Tensor& gates, at::Tensor& n_all, at::Tensor& states, at::Tensor& out) {
  const int64_t D = gates.size(0), Tn = gates.size(1), B = gates.size(2), H = n_all.size(3), G = 3 * H;
  for (int64_t t = 0; t < Tn; ++t) {
    for (int64_t d = 0; d < D; ++d) {                     // gates[d, t] = h_{t-1} U^T  (B, 3H)
      at::Tensor g = gates[d][t];
      at::mm_out(g, states[d][t], U_t[d]);
    }
    rows(D * B, H, [&](int64_t row) {
      const int64_t d = row / B, b = row % B, i = (d * Tn + t) * B + b, tt = time_index(d, t, len[b]);
      const T* __restrict__ x = gx.data_ptr<T>() + (tt * B + b) * D * G + d * G;     // this direction's W x at tt
      const T* __restrict__ bh = bias.data_ptr<T>() + d * G;
      T* __restrict__ g = gates.data_ptr<T>() + i * G;
      T* __restrict__ n = n_all.data_ptr<T>() + i * H;
      const T* __restrict__ hp = states.data_ptr<T>() + ((d * (Tn + 1) + t) * B + b) * H;   // h_{t-1}
      T* __restrict__ h = states.data_ptr<T>() + ((d * (Tn + 1) + t + 1) * B + b) * H;    // h_t
      T* __restrict__ o = out.data_ptr<T>() + ((tt * D + d) * B + b) * H;
      for (int64_t j = 0; j < 2 * H; ++j) g[j] += x[j] + bh[j];
      sigmoid_(g, 2 * H);                                      // g = [r, z, .]
      for (int64_t j = 0; j < H; ++j) {
        g[2 * H + j] += bh[2 * H + j];                         // g = [r, z, U_n h + b_n]
        n[j] = x[2 * H + j] + g[j] * g[2 * H + j];
      }
      tanh_(n, H);                                             // n
      for (int64_t j = 0; j < H; ++j) h[j] = n[j] + g[H + j] * (hp[j] - n[j]);
      for (int64_t j = 0; j < H; ++j) o[j] = t < len[b] ? h[j] : T(0);   // 0 at padded steps
    });
  }
}

template <typename T>
void backward_steps(const at::Tensor& dout, const int64_t* len, const at::Tensor& U, const at::Tensor& gates,
                    const at::Tensor& n_all, const at::Tensor& states, at::Tensor& dgh, at::Tensor& dgx) {
  const int64_t D = gates.size(0), Tn = gates.size(1), B = gates.size(2), H = n_all.size(3), G = 3 * H;
  at::Tensor carry = at::zeros({D, B, H}, n_all.options());   // dL/dh_t from step t + 1: dh z + dgh U
  for (int64_t t = Tn - 1; t >= 0; --t) {
    rows(D * B, H, [&](int64_t row) {
      const int64_t d = row / B, b = row % B, i = (d * Tn + t) * B + b, tt = time_index(d, t, len[b]);
      const bool valid = t < len[b];                           // a padded step's output is 0: no gradient
      const T* __restrict__ g = gates.data_ptr<T>() + i * G;   // [r, z, U_n h + b_n]
      const T* __restrict__ n = n_all.data_ptr<T>() + i * H;
      const T* __restrict__ hp = states.data_ptr<T>() + ((d * (Tn + 1) + t) * B + b) * H;
      const T* __restrict__ go = dout.data_ptr<T>() + ((tt * D + d) * B + b) * H;
      T* __restrict__ c = carry.data_ptr<T>() + row * H;
      T* __restrict__ dg = dgh.data_ptr<T>() + i * G;
      T* __restrict__ dx = dgx.data_ptr<T>() + (tt * B + b) * D * G + d * G;
      for (int64_t j = 0; j < H; ++j) {
        const T r = g[j], z = g[H + j], gn = g[2 * H + j], nj = n[j], dh = (valid ? go[j] : T(0)) + c[j];
        const T dn = dh * (1 - z) * (1 - nj * nj);            // d(pre-tanh)
        const T dr = dn * gn * r * (1 - r);                   // d(pre-sigmoid of r)
        const T dz = dh * (hp[j] - nj) * z * (1 - z);         // d(pre-sigmoid of z)
        dg[j] = dx[j] = dr;
        dg[H + j] = dx[H + j] = dz;
        dg[2 * H + j] = dn * r;                               // d(U_n h + b_n)
        dx[2 * H + j] = dn;                                   // d(W_n x)
        c[j] = dh * z;
      }
    });
    if (t)
      for (int64_t d = 0; d < D; ++d) {                   // + [dr, dz, dn r] U (addmm_out: FLOP counters see it)
        at::Tensor c = carry[d];
        at::addmm_out(c, c, dgh[d][t], U[d]);
      }
  }
}

const int64_t* checked_lengths(const at::Tensor& lengths, int64_t B, int64_t Tn) {
  TORCH_CHECK(lengths.dim() == 1 && lengths.size(0) == B && lengths.scalar_type() == at::kLong && lengths.is_contiguous()
              && lengths.device().is_cpu(), "lengths must be a contiguous CPU int64 (B,) tensor");
  TORCH_CHECK(lengths.min().item<int64_t>() >= 0 && lengths.max().item<int64_t>() <= Tn, "lengths must be in [0, T]");
  return lengths.data_ptr<int64_t>();
}

// ---- BatchNorm over the valid frames (reference.layers._MaskedBatchNorm, training mode)
// Two layouts, each in place of a gather-normalise-scatter: 'rows' x (T, B, C), frame (t, b) valid iff t < len[b],
// channel innermost (SequenceWiseBatchNorm); 'maps' x (B, C, F, T), valid iff t < len[b], time innermost
// (MaskedBatchNorm2d).  Statistics in double, two passes (mean, then squared deviations); padding may hold anything
// (it is never read into a sum) and comes out 0.  The running estimates are updated in Python from the returned moments.

// Loops of independent lanes, which -O3 vectorises without reassociating sums (no -ffast-math): a run's sum in LANES
// partial sums; a block of rows summed row by row into float accumulators, flushed to double every CHUNK rows.
constexpr int64_t LANES = 16, CHUNK = 64;

template <typename T> double sum_run(const T* __restrict__ r, int64_t n, T m, bool square) {   // sum (r - m)^square
  T acc[LANES] = {};
  int64_t i = 0;
  if (square) for (; i + LANES <= n; i += LANES) for (int64_t l = 0; l < LANES; ++l) { const T d = r[i + l] - m; acc[l] += d * d; }
  else for (; i + LANES <= n; i += LANES) for (int64_t l = 0; l < LANES; ++l) acc[l] += r[i + l];
  double s = 0.0;
  for (int64_t l = 0; l < LANES; ++l) s += acc[l];
  for (; i < n; ++i) s += square ? double(r[i] - m) * double(r[i] - m) : double(r[i]);
  return s;
}
template <typename T> void dot_run(const T* __restrict__ g, const T* __restrict__ x, int64_t n, T m, double& sg, double& sgx) {
  T a[LANES] = {}, b[LANES] = {};                               // sum g, sum g (x - m)
  int64_t i = 0;
  for (; i + LANES <= n; i += LANES)
    for (int64_t l = 0; l < LANES; ++l) { a[l] += g[i + l]; b[l] += g[i + l] * (x[i + l] - m); }
  for (int64_t l = 0; l < LANES; ++l) { sg += a[l]; sgx += b[l]; }
  for (; i < n; ++i) { sg += g[i]; sgx += g[i] * (x[i] - m); }
}
template <typename T> void add_row(T* __restrict__ acc, const T* __restrict__ r, const T* __restrict__ m, int64_t n) {
  if (m) for (int64_t j = 0; j < n; ++j) { const T d = r[j] - m[j]; acc[j] += d * d; }
  else for (int64_t j = 0; j < n; ++j) acc[j] += r[j];
}
template <typename T> void add_dot_row(T* __restrict__ a, T* __restrict__ b, const T* __restrict__ g, const T* __restrict__ x,
                                       const T* __restrict__ m, int64_t n) {
  for (int64_t j = 0; j < n; ++j) { a[j] += g[j]; b[j] += g[j] * (x[j] - m[j]); }
}
template <typename T> void flush(std::vector<double>& s, std::vector<T>& acc) {
  for (size_t j = 0; j < s.size(); ++j) { s[j] += acc[j]; acc[j] = T(0); }
}

// One channel's y = x scale + shift from its mean and q, the sum of squared deviations about m (the mean rounded to
// T), corrected to the exact mean: var = q / n - (mean - m)^2 (biased).
template <typename T> void channel_affine(double mean, T m, double q, int64_t n, double eps, T w, T b, double& var,
                                          T& scale, T& shift) {
  const double dm = mean - double(m);
  var = std::max(q / n - dm * dm, 0.0);
  const double is = 1.0 / std::sqrt(var + eps);
  scale = T(w * is); shift = T(b - mean * w * is);
}

// One channel's gradients from sg = sum dy, sgx = sum dy (x - mean): dweight, dbias, and dx = k dy - a (x - m) - c0.
template <typename T> void channel_grads(double sg, double sgx, double is, T w, int64_t n, T& dw, T& db, T& k, T& a,
                                         T& c0) {
  dw = T(sgx * is); db = T(sg);
  k = T(w * is); a = T(w * is * is * is * sgx / n); c0 = T(w * is * sg / n);
}

// Channels [lo, hi) of x (T, B, C): sums over the valid frames of (x - m)^2 (m given) or of x (m null).
template <typename T> std::vector<double> rows_sum(const T* x, const int64_t* len, int64_t Tn, int64_t B, int64_t C,
                                                   int64_t lo, int64_t hi, const T* m) {
  std::vector<double> s(hi - lo, 0.0);
  std::vector<T> acc(hi - lo, T(0));
  int64_t k = 0;
  for (int64_t t = 0; t < Tn; ++t)
    for (int64_t b = 0; b < B; ++b) if (t < len[b]) {
      add_row(acc.data(), x + (t * B + b) * C + lo, m, hi - lo);
      if (++k % CHUNK == 0) flush(s, acc);
    }
  flush(s, acc);
  return s;
}

template <typename T>
std::vector<at::Tensor> bn_forward_impl(const at::Tensor& x, const int64_t* len, bool rows, const at::Tensor& weight,
                                        const at::Tensor& bias, double eps, int64_t n) {
  const T* xp = x.data_ptr<T>();
  at::Tensor y = at::empty_like(x);
  T* yp = y.data_ptr<T>();
  const T* w = weight.data_ptr<T>();
  const T* bb = bias.data_ptr<T>();
  at::Tensor mean = at::empty({rows ? x.size(2) : x.size(1)}, x.options().dtype(at::kDouble));
  at::Tensor var = at::empty_like(mean);
  double* mp = mean.data_ptr<double>();
  double* vp = var.data_ptr<double>();
  if (rows) {                                        // (T, B, C): blocks of channels in parallel, frames in order
    const int64_t Tn = x.size(0), B = x.size(1), C = x.size(2);
    at::parallel_for(0, C, 64, [&](int64_t lo, int64_t hi) {
      const int64_t w_ = hi - lo;
      std::vector<T> m(w_), scale(w_), shift(w_);
      std::vector<double> s = rows_sum<T>(xp, len, Tn, B, C, lo, hi, nullptr);
      for (int64_t j = 0; j < w_; ++j) { mp[lo + j] = s[j] / n; m[j] = T(mp[lo + j]); }
      std::vector<double> q = rows_sum<T>(xp, len, Tn, B, C, lo, hi, m.data());
      for (int64_t j = 0; j < w_; ++j)
        channel_affine(mp[lo + j], m[j], q[j], n, eps, w[lo + j], bb[lo + j], vp[lo + j], scale[j], shift[j]);
      for (int64_t t = 0; t < Tn; ++t)
        for (int64_t b = 0; b < B; ++b) {
          const T* __restrict__ r = xp + (t * B + b) * C + lo;
          T* __restrict__ o = yp + (t * B + b) * C + lo;
          const T* __restrict__ a = scale.data();
          const T* __restrict__ c = shift.data();
          if (t < len[b]) for (int64_t j = 0; j < w_; ++j) o[j] = r[j] * a[j] + c[j];
          else for (int64_t j = 0; j < w_; ++j) o[j] = T(0);
        }
    });
  } else {                                           // (B, C, F, T): channels in parallel, valid runs along time
    const int64_t B = x.size(0), C = x.size(1), Fq = x.size(2), Tn = x.size(3);
    at::parallel_for(0, C, 1, [&](int64_t lo, int64_t hi) {
      for (int64_t c = lo; c < hi; ++c) {
        double s = 0.0, q = 0.0;
        for (int64_t b = 0; b < B; ++b)
          for (int64_t f = 0; f < Fq; ++f) s += sum_run(xp + ((b * C + c) * Fq + f) * Tn, len[b], T(0), false);
        mp[c] = s / n;
        const T m = T(mp[c]);
        for (int64_t b = 0; b < B; ++b)
          for (int64_t f = 0; f < Fq; ++f) q += sum_run(xp + ((b * C + c) * Fq + f) * Tn, len[b], m, true);
        T scale, shift;
        channel_affine(mp[c], m, q, n, eps, w[c], bb[c], vp[c], scale, shift);
        for (int64_t b = 0; b < B; ++b)
          for (int64_t f = 0; f < Fq; ++f) {
            const T* __restrict__ r = xp + ((b * C + c) * Fq + f) * Tn;
            T* __restrict__ o = yp + ((b * C + c) * Fq + f) * Tn;
            int64_t t = 0;
            for (; t < len[b]; ++t) o[t] = r[t] * scale + shift;
            for (; t < Tn; ++t) o[t] = T(0);
          }
      }
    });
  }
  return {y, mean, var};
}

// dy as x; mean, invstd (C,) double.  dx = w invstd (dy - mean(dy) - x_hat mean(dy x_hat)) on valid frames, 0 on
// padding; dweight = sum(dy x_hat), dbias = sum(dy), sums over the valid frames.
template <typename T>
std::vector<at::Tensor> bn_backward_impl(const at::Tensor& dy, const at::Tensor& x, const int64_t* len, bool rows,
                                         const at::Tensor& weight, const at::Tensor& mean, const at::Tensor& invstd,
                                         int64_t n) {
  const T* gp = dy.data_ptr<T>();
  const T* xp = x.data_ptr<T>();
  at::Tensor dx = at::empty_like(x);
  T* dp = dx.data_ptr<T>();
  const T* w = weight.data_ptr<T>();
  const double* mp = mean.data_ptr<double>();
  const double* ip = invstd.data_ptr<double>();
  at::Tensor dw = at::empty_like(weight), db = at::empty_like(weight);
  T* dwp = dw.data_ptr<T>();
  T* dbp = db.data_ptr<T>();
  if (rows) {
    const int64_t Tn = x.size(0), B = x.size(1), C = x.size(2);
    at::parallel_for(0, C, 64, [&](int64_t lo, int64_t hi) {
      const int64_t w_ = hi - lo;
      std::vector<double> sg(w_, 0.0), sgx(w_, 0.0);
      std::vector<T> m(w_), a(w_, T(0)), bacc(w_, T(0)), k(w_), ax(w_), c0(w_);
      for (int64_t j = 0; j < w_; ++j) m[j] = T(mp[lo + j]);
      int64_t cnt = 0;
      for (int64_t t = 0; t < Tn; ++t)
        for (int64_t b = 0; b < B; ++b) if (t < len[b]) {
          add_dot_row(a.data(), bacc.data(), gp + (t * B + b) * C + lo, xp + (t * B + b) * C + lo, m.data(), w_);
          if (++cnt % CHUNK == 0) { flush(sg, a); flush(sgx, bacc); }
        }
      flush(sg, a); flush(sgx, bacc);
      for (int64_t j = 0; j < w_; ++j)
        channel_grads(sg[j], sgx[j], ip[lo + j], w[lo + j], n, dwp[lo + j], dbp[lo + j], k[j], ax[j], c0[j]);
      for (int64_t t = 0; t < Tn; ++t)
        for (int64_t b = 0; b < B; ++b) {
          const T* __restrict__ g = gp + (t * B + b) * C + lo;
          const T* __restrict__ r = xp + (t * B + b) * C + lo;
          T* __restrict__ o = dp + (t * B + b) * C + lo;
          const T* __restrict__ kk = k.data();
          const T* __restrict__ aa = ax.data();
          const T* __restrict__ cc = c0.data();
          const T* __restrict__ mm = m.data();
          if (t < len[b]) for (int64_t j = 0; j < w_; ++j) o[j] = kk[j] * g[j] - aa[j] * (r[j] - mm[j]) - cc[j];
          else for (int64_t j = 0; j < w_; ++j) o[j] = T(0);
        }
    });
  } else {
    const int64_t B = x.size(0), C = x.size(1), Fq = x.size(2), Tn = x.size(3);
    at::parallel_for(0, C, 1, [&](int64_t lo, int64_t hi) {
      for (int64_t c = lo; c < hi; ++c) {
        const T m = T(mp[c]);
        double sg = 0.0, sgx = 0.0;
        for (int64_t b = 0; b < B; ++b)
          for (int64_t f = 0; f < Fq; ++f) {
            const int64_t o = ((b * C + c) * Fq + f) * Tn;
            dot_run(gp + o, xp + o, len[b], m, sg, sgx);
          }
        T k, a, c0;
        channel_grads(sg, sgx, ip[c], w[c], n, dwp[c], dbp[c], k, a, c0);
        for (int64_t b = 0; b < B; ++b)
          for (int64_t f = 0; f < Fq; ++f) {
            const int64_t o = ((b * C + c) * Fq + f) * Tn;
            const T* __restrict__ g = gp + o;
            const T* __restrict__ r = xp + o;
            T* __restrict__ d = dp + o;
            int64_t t = 0;
            for (; t < len[b]; ++t) d[t] = k * g[t] - a * (r[t] - m) - c0;
            for (; t < Tn; ++t) d[t] = T(0);
          }
      }
    });
  }
  return {dx, dw, db};
}

// Values per channel over the valid frames: sum of lengths, times the frequency bins of a 'maps' frame.
int64_t valid_values(const int64_t* len, int64_t B, int64_t per_frame) {
  int64_t n = 0;
  for (int64_t b = 0; b < B; ++b) n += len[b];
  return n * per_frame;
}

}  // namespace

// gx (T, B, D * 3H) contiguous: W x of every direction in time order (D = 1 or 2; direction 1 runs each sequence
// backwards), lengths (B,) int64, weight (D, 3H, H), bias (D, 3H), one float dtype, on the CPU.
// Returns out (T, D, B, H) in time order, 0 at padded steps; for the backward, in each direction's own step order,
// states (D, T + 1, B, H) (h_0 = 0, h_1 .. h_T), gates [r, z, U_n h + b_n] (D, T, B, 3H) and n (D, T, B, H).
std::vector<at::Tensor> gru_forward(at::Tensor gx, at::Tensor lengths, at::Tensor weight, at::Tensor bias) {
  TORCH_CHECK(gx.dim() == 3 && gx.is_contiguous() && gx.device().is_cpu(), "gx must be a contiguous CPU (T, B, D * 3H) tensor");
  const int64_t D = weight.size(0), Tn = gx.size(0), B = gx.size(1), G = weight.size(1), H = weight.size(2);
  TORCH_CHECK(weight.dim() == 3 && G == 3 * H && gx.size(2) == D * G && D <= 2 && bias.numel() == D * G,
              "weight must be (D, 3H, H), bias (D, 3H) and gx (T, B, D * 3H)");
  TORCH_CHECK(weight.scalar_type() == gx.scalar_type() && bias.scalar_type() == gx.scalar_type(), "one dtype for all");
  const int64_t* len = checked_lengths(lengths, B, Tn);
  std::vector<at::Tensor> U_t;
  for (int64_t d = 0; d < D; ++d) U_t.push_back(weight[d].t().contiguous());   // (H, 3H)
  at::Tensor gates = at::empty({D, Tn, B, G}, gx.options());
  at::Tensor n_all = at::empty({D, Tn, B, H}, gx.options());
  at::Tensor states = at::empty({D, Tn + 1, B, H}, gx.options());
  at::Tensor out = at::empty({Tn, D, B, H}, gx.options());
  states.select(1, 0).zero_();
  at::Tensor b = bias.contiguous();
  AT_DISPATCH_FLOATING_TYPES(gx.scalar_type(), "gru_forward", [&] {
    forward_steps<scalar_t>(gx, len, U_t, b, gates, n_all, states, out);
  });
  return {out, states, gates, n_all};
}

// dout (T, D, B, H) contiguous; returns d gx (T, B, D * 3H), d weight (D, 3H, H), d bias (D, 3H).
std::vector<at::Tensor> gru_backward(at::Tensor dout, at::Tensor lengths, at::Tensor weight, at::Tensor states,
                                     at::Tensor gates, at::Tensor n_all) {
  const int64_t D = gates.size(0), Tn = gates.size(1), B = gates.size(2), G = gates.size(3), H = n_all.size(3);
  TORCH_CHECK(dout.is_contiguous() && dout.dim() == 4 && dout.size(0) == Tn && dout.size(1) == D && dout.size(2) == B
              && dout.size(3) == H, "dout must be contiguous (T, D, B, H)");
  const int64_t* len = checked_lengths(lengths, B, Tn);
  at::Tensor dgh = at::empty_like(gates), dgx = at::empty({Tn, B, D * G}, gates.options());
  at::Tensor U = weight.contiguous();
  AT_DISPATCH_FLOATING_TYPES(gates.scalar_type(), "gru_backward", [&] {
    backward_steps<scalar_t>(dout, len, U, gates, n_all, states, dgh, dgx);
  });
  // dU_d = sum_t dgh_t^T h_{t-1}: one product per direction over all steps (as the readable loop, h_0 = 0 included)
  at::Tensor dweight = at::empty_like(U);
  for (int64_t d = 0; d < D; ++d) {
    at::Tensor dw = dweight[d];
    at::mm_out(dw, dgh[d].reshape({-1, G}).t(), states[d].narrow(0, 0, Tn).reshape({-1, H}));
  }
  return {dgx, dweight, dgh.sum({1, 2})};
}

// x (T, B, C) ('rows') or (B, C, F, T) ('maps') contiguous; lengths (B,) int64; weight, bias (C,) of x's dtype.
// Returns y (as x, 0 on padding), the batch mean and biased variance (C,) in double, over n valid frames (x F).
std::vector<at::Tensor> bn_forward(at::Tensor x, at::Tensor lengths, bool rows, at::Tensor weight, at::Tensor bias,
                                   double eps) {
  TORCH_CHECK(x.is_contiguous() && x.device().is_cpu() && x.dim() == (rows ? 3 : 4), "x must be contiguous CPU (T, B, C) or (B, C, F, T)");
  const int64_t B = rows ? x.size(1) : x.size(0), C = rows ? x.size(2) : x.size(1), Tn = rows ? x.size(0) : x.size(3);
  TORCH_CHECK(weight.is_contiguous() && bias.is_contiguous() && weight.numel() == C && bias.numel() == C
              && weight.scalar_type() == x.scalar_type() && bias.scalar_type() == x.scalar_type(), "weight, bias (C,) of x's dtype");
  const int64_t* len = checked_lengths(lengths, B, Tn);
  const int64_t n = valid_values(len, B, rows ? 1 : x.size(2));
  TORCH_CHECK(n >= 2, "training BatchNorm needs at least 2 valid values per channel");
  std::vector<at::Tensor> out;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "bn_forward", [&] { out = bn_forward_impl<scalar_t>(x, len, rows, weight, bias, eps, n); });
  return out;
}

std::vector<at::Tensor> bn_backward(at::Tensor dy, at::Tensor x, at::Tensor lengths, bool rows, at::Tensor weight,
                                    at::Tensor mean, at::Tensor invstd) {
  TORCH_CHECK(dy.is_contiguous() && dy.sizes() == x.sizes() && dy.scalar_type() == x.scalar_type(), "dy must be contiguous, as x");
  const int64_t B = rows ? x.size(1) : x.size(0), Tn = rows ? x.size(0) : x.size(3);
  const int64_t* len = checked_lengths(lengths, B, Tn);
  const int64_t n = valid_values(len, B, rows ? 1 : x.size(2));
  std::vector<at::Tensor> out;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "bn_backward", [&] {
    out = bn_backward_impl<scalar_t>(dy, x, len, rows, weight, mean, invstd, n);
  });
  return out;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("gru_forward", &gru_forward);
  m.def("gru_backward", &gru_backward);
  m.def("bn_forward", &bn_forward);
  m.def("bn_backward", &bn_backward);
}
"""

_FLAGS = ["-O3"]
_NAME = "ds2_gru_" + hashlib.sha1(repr((CPP_SOURCE, _FLAGS, torch.__version__)).encode()).hexdigest()[:12]
_BUILD = dict(name=_NAME, cpp_sources=[CPP_SOURCE], extra_cflags=_FLAGS, no_implicit_headers=True, verbose=False)

_module = None
_tried = False


def build_directory() -> str:
    """Where the extension is built and cached: torch's extension folder (never the repository)."""
    from torch.utils.cpp_extension import get_default_build_root
    return os.path.join(os.environ.get("TORCH_EXTENSIONS_DIR") or get_default_build_root(), _NAME)


def enabled() -> bool:
    """Whether the environment asks for the compiled kernel (``DS2_GRU_KERNEL=1``; off by default)."""
    return os.environ.get("DS2_GRU_KERNEL", "0") == "1"


def _why_unavailable() -> str | None:
    """A reason the kernel cannot be built here, without trying; None if it may."""
    if not enabled():
        return "turned off: DS2_GRU_KERNEL=1 turns it on"
    if shutil.which(os.environ.get("CXX", "c++"), path=_tool_path()) is None:
        return f"no C++ compiler ({os.environ.get('CXX', 'c++')}) on PATH"
    if shutil.which("ninja", path=_tool_path()) is None:
        return "no ninja on PATH (torch's extension builder needs it: pip install ninja)"
    return None


def _tool_path() -> str:
    """PATH for the build, with this Python's own bin folder first (a ``pip install ninja`` in an
    environment that is not activated)."""
    return os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])


def _library(directory: str) -> str:
    """The built extension's file (torch names it after the extension)."""
    return os.path.join(directory, _NAME + (".pyd" if sys.platform == "win32" else ".so"))


def _import(directory: str):
    """Import the built extension (no compiler or ninja needed to load it)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(_NAME, _library(directory))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def _exclusive(directory: str, timeout: float):
    """Hold an ``flock`` on ``directory``/build.flock (released by the OS even if this process dies), so one
    process builds while the others wait; a ``lock`` file left by torch's own locking after a killed build is
    stale while we hold it, and removed (torch would otherwise wait on it forever)."""
    import fcntl
    with open(os.path.join(directory, "build.flock"), "w") as f:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"another process held the build lock for over {timeout:.0f} s")
                time.sleep(0.2)
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(directory, "lock"))
        yield


def _build_here(directory: str | None = None):
    """Compile the extension into ``directory`` (the build child of :func:`load` runs this)."""
    from torch.utils.cpp_extension import load_inline
    directory = directory or build_directory()
    os.makedirs(directory, exist_ok=True)
    return load_inline(build_directory=directory, **_BUILD)


def _run_build(directory: str) -> None:
    """Build in a child process, in its own process group: all of it (ninja, the compiler) is killed on timeout."""
    code = "import sys; sys.path.insert(0, sys.argv[1]); from reference import _gru_kernel as k; k._build_here(sys.argv[2])"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    child = subprocess.Popen([sys.executable, "-c", code, root, directory], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True,
                             env={**os.environ, "PATH": _tool_path()})
    try:
        _, err = child.communicate(timeout=BUILD_TIMEOUT)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, 9)
        child.communicate()
        raise
    if child.returncode:
        lines = [line for line in err.strip().splitlines() if "error" in line.lower()] or err.strip().splitlines() or ["?"]
        raise RuntimeError(f"the build failed: {lines[0][:300]}")


def load():
    """The compiled extension, or ``None`` (with one logged line saying why) if it cannot be had here.

    The first call in a machine's life compiles it in a child process (killed after ``BUILD_TIMEOUT``
    seconds), under a lock that other processes wait on; later processes import the cached build.
    """
    global _module, _tried
    if not enabled():                   # opt-in: off is the default, not a failure worth a line
        return None
    if _tried:
        return _module
    _tried = True
    reason = _why_unavailable()
    if reason is None:
        try:
            directory = build_directory()
            os.makedirs(directory, exist_ok=True)
            with _exclusive(directory, BUILD_TIMEOUT):
                if not os.path.exists(_library(directory)):
                    t0 = time.monotonic()
                    _run_build(directory)
                    log.info("compiled the GRU kernel in %.0f s (%s)", time.monotonic() - t0, directory)
                _module = _import(directory)
        except subprocess.TimeoutExpired:
            reason = f"the build took over {BUILD_TIMEOUT:.0f} s"
        except Exception as e:  # noqa: BLE001 - any failure to build or load means: use the Python path
            reason = f"{type(e).__name__}: {e}"
    if _module is None:
        log.warning("reference: the compiled GRU kernel is unavailable (%s); training uses the Python fast path, "
                    "same results, slower", reason)
    return _module


class CompiledGRURecurrence(torch.autograd.Function):
    """A layer's GRU recurrence by the compiled kernel, from its whole projection: ``gx`` ``(T, B, D * 3H)``
    (direction ``d``'s ``B(W x)`` in columns ``d * 3H ...``; direction 1 runs each sequence backwards from its
    own last step, as :func:`reference.layers.reverse_padded` arranges it for the Python paths), ``lengths``
    ``(B,)`` int64, ``weight_hh`` ``(D, 3H, H)``, ``bias_hh`` ``(D, 3H)`` -> ``(T, D, B, H)``: the states in time
    order, 0 at padded steps.  The maths of :class:`reference.layers._GRURecurrence` (see there)."""

    @staticmethod
    def forward(ctx, gx, lengths, weight_hh, bias_hh):
        lengths = lengths.to("cpu", torch.long).contiguous()
        out, states, gates, n_all = _module.gru_forward(gx.contiguous(), lengths, weight_hh, bias_hh)
        ctx.save_for_backward(lengths, weight_hh, states, gates, n_all)
        return out

    @staticmethod
    def backward(ctx, dout):
        lengths, weight_hh, states, gates, n_all = ctx.saved_tensors
        dgx, d_weight, d_bias = _module.gru_backward(dout.contiguous(), lengths, weight_hh, states, gates, n_all)
        return dgx, None, d_weight, d_bias


class CompiledMaskedBatchNorm(torch.autograd.Function):
    """Training-mode BatchNorm over the valid frames by the compiled kernel, in place of
    :class:`reference.layers._MaskedBatchNorm`'s gather of the valid frames, torch's BatchNorm and scatter back:
    ``x`` ``(T, B, C)`` (``rows=True``: :class:`~reference.layers.SequenceWiseBatchNorm`) or ``(B, C, F, T)``
    (``rows=False``: :class:`~reference.layers.MaskedBatchNorm2d`), ``lengths`` ``(B,)``, ``weight`` and ``bias``
    ``(C,)`` -> ``(y, mean, var)``: ``y`` as ``x``, 0 at padded frames; the batch mean and biased variance ``(C,)``
    (float64, not differentiable) from which the caller updates the running estimates.  Two passes for the
    statistics, one for ``y``; the backward is BatchNorm's (two passes), 0 at padded frames."""

    @staticmethod
    def forward(ctx, x, lengths, weight, bias, rows: bool, eps: float):
        x, lengths = x.contiguous(), lengths.to("cpu", torch.long).contiguous()
        y, mean, var = _module.bn_forward(x, lengths, rows, weight.contiguous(), bias.contiguous(), eps)
        ctx.save_for_backward(x, lengths, weight, mean, (var + eps).rsqrt())
        ctx.rows = rows
        ctx.mark_non_differentiable(mean, var)
        return y, mean, var

    @staticmethod
    def backward(ctx, dy, _dmean, _dvar):
        x, lengths, weight, mean, invstd = ctx.saved_tensors
        dx, d_weight, d_bias = _module.bn_backward(dy.contiguous(), x, lengths, ctx.rows, weight.contiguous(), mean, invstd)
        return dx, None, d_weight, d_bias, None, None
