// codax_hls.h -- shared, header-only pieces of every codax-generated HLS kernel.
//
// The generated kernels (kernels/<layer>.cpp) contain only what differs per layer: the mapping's
// loop nest, buffer shapes and where each tile is loaded or stored. Everything else lives here:
// tile copies between memory levels (DRAM <-> on-chip <-> per-PE), the input-window loader that
// moves only the rows/cols a tile touches (zero padding written explicitly), the MAC, the fused
// epilogue (bias, residual, requantization, activation clamp) and the optional transfer counters.
//
// Buffer layouts (every level, every operand; indices are relative to the tile's origin):
//   W[g][k][c][r][s]      I[n][g][c][row][col] (dense input window, padded coordinates)
//   O[n][g][k][p][q]      (held at accumulator width on chip)
// DRAM layouts: W [G*K][C][R][S], I [N][G*C][H][W], O / psum scratch / residual [N][G*K][P][Q].
//
// Build with -DCODAX_COUNT to count, per level boundary and operand, the words written into a
// level from its parent (in) and leaving it (out), and the valid MACs: these counts must equal
// codax.hw.evaluate's words_in / words_out / macs exactly (docs/cost_model.md).
#ifndef CODAX_HLS_H
#define CODAX_HLS_H

#include <math.h>
#include <stdint.h>

#include "ap_int.h"

#ifndef CODAX_MAX_LEVELS
#define CODAX_MAX_LEVELS 8
#endif

namespace codax {

enum Operand { OP_W = 0, OP_I = 1, OP_O = 2 };

// ---- instrumentation ---------------------------------------------------------------------------
struct Counts {
  unsigned long long in[CODAX_MAX_LEVELS][3];
  unsigned long long out[CODAX_MAX_LEVELS][3];
  unsigned long long macs;
};

inline Counts &counts() {
  static Counts c;
  return c;
}

inline void counts_reset() {
  Counts &c = counts();
  for (int h = 0; h < CODAX_MAX_LEVELS; ++h)
    for (int x = 0; x < 3; ++x) c.in[h][x] = c.out[h][x] = 0;
  c.macs = 0;
}

#ifdef CODAX_COUNT
#define CODAX_COUNT_IN(h, x, n) (::codax::counts().in[(h)][(x)] += (unsigned long long)(n))
#define CODAX_COUNT_OUT(h, x, n) (::codax::counts().out[(h)][(x)] += (unsigned long long)(n))
#define CODAX_COUNT_MAC() (::codax::counts().macs += 1ULL)
#else
#define CODAX_COUNT_IN(h, x, n) ((void)(n))
#define CODAX_COUNT_OUT(h, x, n) ((void)(n))
#define CODAX_COUNT_MAC() ((void)0)
#endif

// ---- loop helpers ------------------------------------------------------------------------------
inline int imin(int a, int b) { return a < b ? a : b; }

// Trip count of a tile loop on the grid: `f` tiles of `blk`, starting at the enclosing base, where
// `remaining` = bound - base. Tiles starting past the bound are skipped (never entered).
inline int trips(int f, int remaining, int blk) { return imin(f, (remaining + blk - 1) / blk); }

// Whether offset y of a dense input window is touched by some output/kernel pair
// i*stride + j*dilation (i < pe, j < re): only those rows/cols are loaded and counted.
inline bool touched(int y, int pe, int re, int stride, int dil) {
  for (int j = 0; j < re; ++j) {
    const int t = y - j * dil;
    if (t < 0) break;
    if (t % stride == 0 && t / stride < pe) return true;
  }
  return false;
}

inline int window(int pe, int re, int stride, int dil) { return (pe - 1) * stride + (re - 1) * dil + 1; }

// ---- weight tiles --------------------------------------------------------------------------------
// DRAM -> on-chip: the (eg x ek x ec x er x es) box at origin (og, ok, oc, orr, os).
template <typename T, int D0, int D1, int D2, int D3, int D4, typename M>
int load_w_dram(T (&dst)[D0][D1][D2][D3][D4], const M *src, int K, int C, int R, int S, int og, int ok,
                int oc, int orr, int os, int eg, int ek, int ec, int er, int es) {
  int n = 0;
LOAD_W_DRAM:
  for (int g = 0; g < eg; ++g)
    for (int k = 0; k < ek; ++k)
      for (int c = 0; c < ec; ++c)
        for (int r = 0; r < er; ++r)
          for (int s = 0; s < es; ++s) {
#pragma HLS PIPELINE II = 1
            const long a = ((((long)(og + g) * K + ok + k) * C + oc + c) * R + orr + r) * S + os + s;
            dst[g][k][c][r][s] = (T)src[a];
            ++n;
          }
  return n;
}

// On-chip -> on-chip (parent to child): child[i] = parent[o + i] over the extents.
template <typename T, int D0, int D1, int D2, int D3, int D4, typename U, int E0, int E1, int E2, int E3,
          int E4>
int copy_in(T (&dst)[D0][D1][D2][D3][D4], const U (&src)[E0][E1][E2][E3][E4], int o0, int o1, int o2, int o3,
            int o4, int e0, int e1, int e2, int e3, int e4) {
  int n = 0;
COPY_IN:
  for (int a = 0; a < e0; ++a)
    for (int b = 0; b < e1; ++b)
      for (int c = 0; c < e2; ++c)
        for (int d = 0; d < e3; ++d)
          for (int e = 0; e < e4; ++e) {
#pragma HLS PIPELINE II = 1
            dst[a][b][c][d][e] = (T)src[o0 + a][o1 + b][o2 + c][o3 + d][o4 + e];
            ++n;
          }
  return n;
}

// On-chip -> on-chip write-back (child to parent): parent[o + i] = child[i].
template <typename T, int D0, int D1, int D2, int D3, int D4, typename U, int E0, int E1, int E2, int E3,
          int E4>
int copy_out(T (&dst)[D0][D1][D2][D3][D4], const U (&src)[E0][E1][E2][E3][E4], int o0, int o1, int o2,
             int o3, int o4, int e0, int e1, int e2, int e3, int e4) {
  int n = 0;
COPY_OUT:
  for (int a = 0; a < e0; ++a)
    for (int b = 0; b < e1; ++b)
      for (int c = 0; c < e2; ++c)
        for (int d = 0; d < e3; ++d)
          for (int e = 0; e < e4; ++e) {
#pragma HLS PIPELINE II = 1
            dst[o0 + a][o1 + b][o2 + c][o3 + d][o4 + e] = (T)src[a][b][c][d][e];
            ++n;
          }
  return n;
}

// ---- input windows -------------------------------------------------------------------------------
// DRAM -> on-chip: the rows/cols of the window at padded origin (orow, ocol) that the tile's
// (pe x re) and (qe x se) extents touch; positions in the zero padding get the zero point `zx`.
template <typename T, int D0, int D1, int D2, int D3, int D4, typename M>
int load_i_dram(T (&dst)[D0][D1][D2][D3][D4], const M *src, int G, int C, int H, int W, int on, int og,
                int oc, int orow, int ocol, int en, int eg, int ec, int pe, int re, int qe, int se, int sh,
                int sw, int dh, int dw, int pad_t, int pad_l, int zx) {
  int n = 0;
  const int wh = window(pe, re, sh, dh), ww = window(qe, se, sw, dw);
LOAD_I_DRAM:
  for (int b = 0; b < en; ++b)
    for (int g = 0; g < eg; ++g)
      for (int c = 0; c < ec; ++c)
        for (int y = 0; y < wh; ++y) {
          if (!touched(y, pe, re, sh, dh)) continue;
          const int iy = orow + y - pad_t;
          for (int x = 0; x < ww; ++x) {
#pragma HLS PIPELINE II = 1
            if (!touched(x, qe, se, sw, dw)) continue;
            const int ix = ocol + x - pad_l;
            const bool inside = iy >= 0 && iy < H && ix >= 0 && ix < W;
            const long a = ((((long)(on + b) * G + og + g) * C + oc + c) * H + iy) * W + ix;
            dst[b][g][c][y][x] = inside ? (T)src[a] : (T)zx;
            ++n;
          }
        }
  return n;
}

// On-chip -> on-chip: the touched rows/cols of the child window, at offset (drow, dcol) in the parent's.
template <typename T, int D0, int D1, int D2, int D3, int D4, typename U, int E0, int E1, int E2, int E3,
          int E4>
int copy_i(T (&dst)[D0][D1][D2][D3][D4], const U (&src)[E0][E1][E2][E3][E4], int on, int og, int oc,
           int drow, int dcol, int en, int eg, int ec, int pe, int re, int qe, int se, int sh, int sw, int dh,
           int dw) {
  int n = 0;
  const int wh = window(pe, re, sh, dh), ww = window(qe, se, sw, dw);
COPY_I:
  for (int b = 0; b < en; ++b)
    for (int g = 0; g < eg; ++g)
      for (int c = 0; c < ec; ++c)
        for (int y = 0; y < wh; ++y) {
          if (!touched(y, pe, re, sh, dh)) continue;
          for (int x = 0; x < ww; ++x) {
#pragma HLS PIPELINE II = 1
            if (!touched(x, qe, se, sw, dw)) continue;
            dst[b][g][c][y][x] = (T)src[on + b][og + g][oc + c][drow + y][dcol + x];
            ++n;
          }
        }
  return n;
}

// ---- output tiles ----------------------------------------------------------------------------------
template <typename T, int D0, int D1, int D2, int D3, int D4>
void zero_o(T (&dst)[D0][D1][D2][D3][D4], int en, int eg, int ek, int ep, int eq) {
ZERO_O:
  for (int a = 0; a < en; ++a)
    for (int b = 0; b < eg; ++b)
      for (int c = 0; c < ek; ++c)
        for (int d = 0; d < ep; ++d)
          for (int e = 0; e < eq; ++e) {
#pragma HLS PIPELINE II = 1
            dst[a][b][c][d][e] = 0;
          }
}

inline long o_addr(int G, int K, int P, int Q, int n, int g, int k, int p, int q) {
  return ((((long)n * G + g) * K + k) * P + p) * Q + q;
}

// Partial sums DRAM scratch -> on-chip (a visit that is not the first).
template <typename T, int D0, int D1, int D2, int D3, int D4, typename M>
int load_psum_dram(T (&dst)[D0][D1][D2][D3][D4], const M *src, int G, int K, int P, int Q, int on, int og,
                   int ok, int op, int oq, int en, int eg, int ek, int ep, int eq) {
  int n = 0;
LOAD_PSUM:
  for (int a = 0; a < en; ++a)
    for (int b = 0; b < eg; ++b)
      for (int c = 0; c < ek; ++c)
        for (int d = 0; d < ep; ++d)
          for (int e = 0; e < eq; ++e) {
#pragma HLS PIPELINE II = 1
            dst[a][b][c][d][e] = src[o_addr(G, K, P, Q, on + a, og + b, ok + c, op + d, oq + e)];
            ++n;
          }
  return n;
}

// On-chip -> DRAM scratch at accumulator width (a visit that is not the last).
template <typename T, int D0, int D1, int D2, int D3, int D4, typename M>
int store_psum_dram(M *dst, const T (&src)[D0][D1][D2][D3][D4], int G, int K, int P, int Q, int on, int og,
                    int ok, int op, int oq, int en, int eg, int ek, int ep, int eq) {
  int n = 0;
STORE_PSUM:
  for (int a = 0; a < en; ++a)
    for (int b = 0; b < eg; ++b)
      for (int c = 0; c < ek; ++c)
        for (int d = 0; d < ep; ++d)
          for (int e = 0; e < eq; ++e) {
#pragma HLS PIPELINE II = 1
            dst[o_addr(G, K, P, Q, on + a, og + b, ok + c, op + d, oq + e)] = (M)src[a][b][c][d][e];
            ++n;
          }
  return n;
}

// ---- MAC and epilogue ------------------------------------------------------------------------------
// Integer MAC with zero points: (w - zw) * (x - zx), widened so neither difference overflows.
template <int AB, typename W, typename X>
inline ap_int<AB> mac_term(W w, X x, int zw, int zx) {
  const ap_int<W::width + 2> dw = (ap_int<W::width + 2>)w - zw;
  const ap_int<X::width + 2> dx = (ap_int<X::width + 2>)x - zx;
  return (ap_int<AB>)(dw * dx);
}
inline float mac_term_f(float w, float x) { return w * x; }

// Integer epilogue (float32 requantization, defined by codax/codegen/golden.py):
//   v = float32(acc + bias) * M[ch]  (+ float32(res - zr) * MR when a residual is fused)
//   q = clamp(rint(v) + zy, lo, hi)    rint = round half to even (the default FP rounding mode)
// lo/hi fold the output type's saturation and the fused activation (relu/relu6/clip).
inline int requant(int32_t acc, float m, bool has_res, int res, int zr, float mr, int zy, int lo, int hi) {
  float v = (float)acc * m;
  if (has_res) v = v + (float)(res - zr) * mr;
  float r = rintf(v);
  if (r > 1073741824.0f) r = 1073741824.0f;
  if (r < -1073741824.0f) r = -1073741824.0f;
  long q = (long)r + zy;
  if (q < lo) q = lo;
  if (q > hi) q = hi;
  return (int)q;
}

// Integer layer without requantization: the accumulator (plus residual) saturated to the output type.
inline int saturate(long v, int lo, int hi) { return (int)(v < lo ? lo : (v > hi ? hi : v)); }

inline float clampf(float v, float lo, float hi) { return v < lo ? lo : (v > hi ? hi : v); }

}  // namespace codax

#endif  // CODAX_HLS_H
