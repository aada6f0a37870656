// codax_engine.h -- the codax overlay engine: one PE array and one set of on-chip buffers that run
// any layer from its descriptor (codax_program.h). Nothing here depends on a network; the PE array
// size and the buffers come from the engine's configuration (engine.cpp, generated from accel.yaml).
//
// How a descriptor runs (the cost model's rules, docs/cost_model.md):
// - the mapping's temporal loops, level by level, DRAM outermost, are an odometer whose digit order is
//   the descriptor's loop list; a digit's trip count skips tiles past the layer's bound;
// - operand X held at level h is (re)loaded from its parent right after the loop it is placed after
//   (the innermost loop above h relevant to X), i.e. exactly when an index relevant to X changes;
//   outputs are written back at the same point, partial sums at accumulator width until their last
//   visit, then through the fused epilogue (bias, residual, requantization, clamp) at output width;
// - one odometer step is one step of the whole PE array: ROWS x COLS MACs, fully unrolled, each PE
//   taking the dims the spatial mode unrolls along its row and column.
// Buffers store elements bit-packed at the layer's widths (weights, inputs) or at accumulator width
// (outputs), input windows without the rows/cols no output touches. DRAM tensors are bit-packed at
// their widths too: weights in tile order (one burst per tile); activations, outputs and run-time
// weight tensors at the element strides the descriptor gives (by default [N][G*C][H][W] and
// [N][G*K][P][Q]; matmuls with a batch: [G][N][C] and [G][N][K]).
//
// Build with -DCODAX_COUNT to count the words moved into and out of each level per operand and the
// valid MACs: they equal codax.hw.evaluate's words_in / words_out / macs exactly.
#ifndef CODAX_ENGINE_H
#define CODAX_ENGINE_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "ap_int.h"
#include "codax_program.h"

#ifndef CODAX_MAX_LEVELS
#define CODAX_MAX_LEVELS 8
#endif

namespace codax {

enum Operand { OP_W = 0, OP_I = 1, OP_O = 2 };
enum Dim { DN = 0, DG, DK, DC, DP, DQ, DR, DS, NDIMS };

// ---- instrumentation -----------------------------------------------------------------------------
struct Counts {
  unsigned long long in[CODAX_MAX_LEVELS][3];
  unsigned long long out[CODAX_MAX_LEVELS][3];
  unsigned long long macs;
};

inline Counts &counts() {
  static Counts c;
  return c;
}

inline double &cycles_total();

inline void counts_reset() {
  memset(&counts(), 0, sizeof(Counts));
  cycles_total() = 0;
}

#ifdef CODAX_COUNT
#define CODAX_COUNT_IN(h, x, n) (::codax::counts().in[(h)][(x)] += (unsigned long long)(n))
#define CODAX_COUNT_OUT(h, x, n) (::codax::counts().out[(h)][(x)] += (unsigned long long)(n))
#define CODAX_COUNT_MAC(n) (::codax::counts().macs += (unsigned long long)(n))
#else
#define CODAX_COUNT_IN(h, x, n) ((void)(n))
#define CODAX_COUNT_OUT(h, x, n) ((void)(n))
#define CODAX_COUNT_MAC(n) ((void)(n))
#endif

typedef long long i64;

inline int imin(int a, int b) { return a < b ? a : b; }
inline int trips(int f, int remaining, int blk) { return imin(f, (remaining + blk - 1) / blk); }
inline int window(int pe, int re, int stride, int dil) { return (pe - 1) * stride + (re - 1) * dil + 1; }

// Whether offset y of a dense input window is touched by some output/kernel pair i*stride + j*dil
// (i < pe, j < re): only those rows/cols are moved and counted.
inline bool touched(int y, int pe, int re, int stride, int dil) {
  for (int j = 0; j < re; ++j) {
    const int t = y - j * dil;
    if (t < 0) break;
    if (t % stride == 0 && t / stride < pe) return true;
  }
  return false;
}

inline float f32(i64 bits) {
  const uint32_t b = (uint32_t)bits;
  float f;
  memcpy(&f, &b, 4);
  return f;
}
inline i64 bits32(float f) {
  uint32_t b;
  memcpy(&b, &f, 4);
  return (i64)b;
}

// ---- bit-packed storage: element i of `bits` bits starts at bit i * bits (little-endian) ----------
inline i64 rd(const uint8_t *m, i64 i, int bits, bool sgn) {
  uint64_t v;
  if (bits == 8) {
    v = m[i];
  } else if (bits == 16) {
    uint16_t t;
    memcpy(&t, m + 2 * i, 2);
    v = t;
  } else if (bits == 32) {
    uint32_t t;
    memcpy(&t, m + 4 * i, 4);
    v = t;
  } else {
    v = 0;
    const i64 b0 = i * bits;
    for (int k = 0; k < bits; ++k) v |= (uint64_t)((m[(b0 + k) >> 3] >> ((b0 + k) & 7)) & 1) << k;
  }
  if (sgn && bits < 64 && ((v >> (bits - 1)) & 1)) return (i64)v - ((i64)1 << bits);
  return (i64)v;
}

inline void wr(uint8_t *m, i64 i, int bits, i64 value) {
  const uint64_t v = (uint64_t)value;
  if (bits == 8) {
    m[i] = (uint8_t)v;
  } else if (bits == 16) {
    const uint16_t t = (uint16_t)v;
    memcpy(m + 2 * i, &t, 2);
  } else if (bits == 32) {
    const uint32_t t = (uint32_t)v;
    memcpy(m + 4 * i, &t, 4);
  } else {
    const i64 b0 = i * bits;
    for (int k = 0; k < bits; ++k) {
      const i64 b = b0 + k;
      const uint8_t bit = (uint8_t)((v >> k) & 1);
      m[b >> 3] = (uint8_t)((m[b >> 3] & ~(1u << (b & 7))) | (bit << (b & 7)));
    }
  }
}

// Integer epilogue (float32 requantization, defined by codax/codegen/golden.py):
//   v = float32(acc + bias) * M[ch]  (+ float32(res - zr) * MR when a residual is fused)
//   q = clamp(rint(v) + zy, lo, hi)    rint = round half to even (the default FP rounding mode)
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

inline i64 wrap(i64 v, int bits) {  // two's complement wrap to `bits` (the accumulator's width)
  if (bits >= 64) return v;
  const uint64_t u = (uint64_t)v & ((1ULL << bits) - 1);
  if ((u >> (bits - 1)) & 1) return (i64)u - ((i64)1 << bits);
  return (i64)u;
}

// The engine's on-chip memory: one byte array per (level, operand), shared where a level has one size;
// and what the cycle accounting needs to know of the hardware: each level's port width (bytes per
// cycle it delivers to the levels inside it; level 0 is the DRAM port), which levels are per-PE
// register files, the MAC pipeline depth and whether weights stream from DRAM into the array.
struct Memory {
  uint8_t *arr[MAX_LEVELS][3];
  double port_bytes[MAX_LEVELS];
  bool per_pe[MAX_LEVELS];
  int pipeline_depth;
  bool stream_weights;
};

// ---- cycle accounting (csim builds with -DCODAX_COUNT) ---------------------------------------------
// The engine's load, compute and store are concurrent tasks that meet only at ping-pong handshakes.
// The clock follows the code as it runs:
// - a tile transfer takes its bits at its parent level's port width, and a per-PE register file's own
//   port width for its share per PE; the load task and the store task each issue their transfers in
//   program order, and share the port's bandwidth (no more bits cross a port than its width allows
//   since the layer began);
// - it starts when the port is free, its source tile is complete, and the copy it overwrites has been
//   read for the last time (a single-buffered level has one copy: the next tile waits for the last
//   use of this one; a double-buffered level has two: the next tile loads while this one computes);
// - a PE-array step takes one cycle (the flattened PIPELINE II=1 loop) once the tiles it reads are
//   complete; an output tile is stored once its last step is done, and its copy is free once stored;
// - the first visit of an output tile needs no load: its first MAC writes instead of accumulating;
// - the layer ends when every task has, plus the MAC pipeline's depth once.
struct Clock {
  double queue_free[2][MAX_LEVELS];  // the load task's and the store task's next issue, per port
  double port_work[MAX_LEVELS];  // cycles of traffic the port has carried
  double ready[3][MAX_LEVELS][2];  // when the tile held in (operand, level, copy) is complete
  double last_use[3][MAX_LEVELS][2];  // when its last reader (or its store) finished
  double t;  // the compute task: end of the last PE-array step
  double end;
};

inline Clock &clock() {
  static Clock k;
  return k;
}

inline double &cycles_total() {
  static double c = 0;
  return c;
}

// DRAM as the engine sees it during one call.
struct Dram {
  const uint8_t *wblob;  // weights, bias (int32 / float32), requantization multipliers (float32)
  const uint8_t *wt;  // a run-time weight tensor (attention's K^T, V), when the descriptor says so
  const uint8_t *x;
  uint8_t *y;
  const uint8_t *r;
  uint8_t *ps;  // partial-sum scratch at accumulator width, [N][G*K][P][Q]
};

// One layer in flight: the descriptor decoded, plus each buffer's current origin and extent.
struct Ctx {
  const int32_t *d;
  Memory mem;
  Dram dram;
  int bound[NDIMS];
  int H, W, sh, sw, dh, dw, pt, pl;
  int bits[3];  // on-chip element widths: W, I, O
  bool sgn[3];
  int ybits, rbits;
  bool rsgn, is_float;
  int zw, zx, zr, zy;
  i64 xs[5], ys[5], rs[5], ws[5];  // DRAM element strides (descriptor X/Y/R/W_STRIDE)
  bool w_rt;  // weights come from the run-time tensor `wt`, strided, not from the blob's tile order
  int o[3][MAX_LEVELS][NDIMS];  // origin of the tile held by (operand, level)
  int e[3][MAX_LEVELS][NDIMS];  // its clipped extent
  int tile[3][MAX_LEVELS][NDIMS];  // its unclipped extent (the tile grid's step)
  int orow[MAX_LEVELS], ocol[MAX_LEVELS];  // input windows: origin in padded coordinates
  // Input windows are stored compacted: only the rows/cols some output/kernel pair touches (a strided
  // window has gaps). rank[h][y] is the stored position of window row (col) y of level h's tile.
  int rank_row[MAX_LEVELS][MAX_WINDOW], rank_col[MAX_LEVELS][MAX_WINDOW];
  int pp[3][MAX_LEVELS];  // ping-pong: the copy in use
  int cur[NDIMS];  // the current tile base of every dim
  int idx[MAX_LOOPS], n[MAX_LOOPS];
  int pes_used;

  int shape(int X, int h, int a) const { return d[D_BUF_SHAPE + (X * MAX_LEVELS + h) * BUF_RANK + a]; }
  uint8_t *buf(int X, int h) const {
    const int k = X * MAX_LEVELS + h;
    return mem.arr[h][X] + d[D_BUF_BASE + k] + pp[X][h] * d[D_BUF_COPY + k];
  }
  i64 at(int X, int h, int a, int b, int c, int e4, int f) const {
    return ((((i64)a * shape(X, h, 1) + b) * shape(X, h, 2) + c) * shape(X, h, 3) + e4) * shape(X, h, 4) + f;
  }
};

#ifdef CODAX_COUNT
inline double maxd(double a, double b) { return a > b ? a : b; }

// A transfer of `bits` into (X, h) from `par` (loads), or out of (X, h) to `par` (stores).
inline void clock_transfer(const Ctx &c, int X, int h, int par, double bits, bool store) {
  Clock &k = clock();
  const int ch = c.pp[X][h], cp = c.pp[X][par];
  double start = k.queue_free[store][par];
  if (store) {
    start = maxd(start, k.last_use[X][h][ch]);
  } else {
    start = maxd(start, k.last_use[X][h][ch]);
    if (par) start = maxd(start, k.ready[X][par][cp]);
  }
  double dur = bits / 8.0 / c.mem.port_bytes[par];
  const int child = store ? par : h;  // the level written
  if (child && c.mem.per_pe[child]) dur = maxd(dur, bits / c.pes_used / 8.0 / c.mem.port_bytes[child]);
  k.port_work[par] += bits / 8.0 / c.mem.port_bytes[par];
  const double end = maxd(start + dur, k.port_work[par]);
  k.queue_free[store][par] = end;
  if (store) {
    k.last_use[X][h][ch] = end;
    if (par) k.ready[X][par][cp] = maxd(k.ready[X][par][cp], end);
  } else {
    // streamed weights enter the array as they arrive: compute may start with the first ones
    k.ready[X][h][ch] = (X == OP_W && par == 0 && c.mem.stream_weights) ? start : end;
    if (par) k.last_use[X][par][cp] = maxd(k.last_use[X][par][cp], end);
  }
  k.end = maxd(k.end, end);
}

// The first visit of an output tile: no transfer, but its copy must have been stored.
inline void clock_first_visit(const Ctx &c, int h) {
  Clock &k = clock();
  const int ch = c.pp[OP_O][h];
  k.ready[OP_O][h][ch] = k.last_use[OP_O][h][ch];
}
#define CODAX_CLOCK(stmt) stmt
#else
#define CODAX_CLOCK(stmt) ((void)0)
#endif

inline bool relevant(int X, int dim) {
  static const bool R[3][NDIMS] = {
      {false, true, true, true, false, false, true, true},  // W: G K C R S
      {true, true, false, true, true, true, true, true},    // I: N G C P Q R S
      {true, true, true, false, true, true, false, false},  // O: N G K P Q
  };
  return R[X][dim];
}

inline bool is_reduction(int dim) { return dim == DC || dim == DR || dim == DS; }

// ---- transfers --------------------------------------------------------------------------------------
// Weights in DRAM are in tile order (codax/codegen/program.py tile_order): tile after tile of the
// grid the DRAM-level weight tiles lie on, each tile contiguous (edge tiles padded), so a tile is one
// burst. The tile's first element and the strides inside it:
inline i64 w_tile_base(const Ctx &c, int h) {
  const int *o = c.o[OP_W][h], *T = c.tile[OP_W][h];
  const int nK = (c.bound[DK] + T[DK] - 1) / T[DK], nC = (c.bound[DC] + T[DC] - 1) / T[DC];
  const int nR = (c.bound[DR] + T[DR] - 1) / T[DR], nS = (c.bound[DS] + T[DS] - 1) / T[DS];
  const i64 id = ((((i64)(o[DG] / T[DG]) * nK + o[DK] / T[DK]) * nC + o[DC] / T[DC]) * nR + o[DR] / T[DR]) * nS +
                 o[DS] / T[DS];
  return id * T[DG] * T[DK] * T[DC] * T[DR] * T[DS];
}

// A run-time weight tensor is read through its layout's strides instead.
inline i64 w_dram_at(const Ctx &c, const int *o, int g, int k, int ch, int r, int s) {
  return (o[DG] + g) * c.ws[0] + (o[DK] + k) * c.ws[1] + (o[DC] + ch) * c.ws[2] + (o[DR] + r) * c.ws[3] +
         (o[DS] + s) * c.ws[4];
}

inline void load_w(Ctx &c, int h, int par) {
  const int *o = c.o[OP_W][h], *e = c.e[OP_W][h], *T = c.tile[OP_W][h];
  uint8_t *dst = c.buf(OP_W, h);
  const int bits = c.bits[OP_W];
  const uint8_t *src = par ? c.buf(OP_W, par) : (c.w_rt ? c.dram.wt : c.dram.wblob + c.d[D_W_OFF]);
  const int *op = c.o[OP_W][par];
  const i64 base = (par || c.w_rt) ? 0 : w_tile_base(c, h);
  i64 n = 0;
LOAD_W:
  for (int g = 0; g < e[DG]; ++g)
    for (int k = 0; k < e[DK]; ++k)
      for (int ch = 0; ch < e[DC]; ++ch)
        for (int r = 0; r < e[DR]; ++r)
          for (int s = 0; s < e[DS]; ++s) {
#pragma HLS PIPELINE II = 1
            i64 a;
            if (par == 0 && c.w_rt)
              a = w_dram_at(c, o, g, k, ch, r, s);
            else if (par == 0)
              a = base + (((((i64)g * T[DK] + k) * T[DC] + ch) * T[DR] + r) * T[DS] + s);
            else
              a = c.at(OP_W, par, o[DG] - op[DG] + g, o[DK] - op[DK] + k, o[DC] - op[DC] + ch, o[DR] - op[DR] + r,
                       o[DS] - op[DS] + s);
            wr(dst, c.at(OP_W, h, g, k, ch, r, s), bits, rd(src, a, bits, c.sgn[OP_W]));
            ++n;
          }
  CODAX_COUNT_IN(h, OP_W, n);
  CODAX_CLOCK(clock_transfer(c, OP_W, h, par, (double)n * bits, false));
}

inline void rank_window(int *rank, int pe, int re, int stride, int dil) {
  int k = 0;
  for (int y = 0; y < window(pe, re, stride, dil); ++y) rank[y] = touched(y, pe, re, stride, dil) ? k++ : -1;
}

inline void load_i(Ctx &c, int h, int par) {
  const int *o = c.o[OP_I][h], *e = c.e[OP_I][h];
  uint8_t *dst = c.buf(OP_I, h);
  const int bits = c.bits[OP_I];
  const int wh = window(e[DP], e[DR], c.sh, c.dh), ww = window(e[DQ], e[DS], c.sw, c.dw);
  rank_window(c.rank_row[h], e[DP], e[DR], c.sh, c.dh);
  rank_window(c.rank_col[h], e[DQ], e[DS], c.sw, c.dw);
  const int *op = c.o[OP_I][par];
  const uint8_t *src = par ? c.buf(OP_I, par) : c.dram.x;
  i64 n = 0;
LOAD_I:
  for (int b = 0; b < e[DN]; ++b)
    for (int g = 0; g < e[DG]; ++g)
      for (int ch = 0; ch < e[DC]; ++ch)
        for (int y = 0; y < wh; ++y) {
          if (!touched(y, e[DP], e[DR], c.sh, c.dh)) continue;
          for (int x = 0; x < ww; ++x) {
#pragma HLS PIPELINE II = 1
            if (!touched(x, e[DQ], e[DS], c.sw, c.dw)) continue;
            i64 v;
            if (par == 0) {
              const int iy = c.orow[h] + y - c.pt, ix = c.ocol[h] + x - c.pl;
              const bool inside = iy >= 0 && iy < c.H && ix >= 0 && ix < c.W;
              const i64 a = (o[DN] + b) * c.xs[0] + (o[DG] + g) * c.xs[1] + (o[DC] + ch) * c.xs[2] + iy * c.xs[3] +
                            ix * c.xs[4];
              v = inside ? rd(src, a, bits, c.sgn[OP_I]) : (c.is_float ? 0 : c.zx);
            } else {
              v = rd(src,
                     c.at(OP_I, par, o[DN] - op[DN] + b, o[DG] - op[DG] + g, o[DC] - op[DC] + ch,
                          c.rank_row[par][c.orow[h] - c.orow[par] + y], c.rank_col[par][c.ocol[h] - c.ocol[par] + x]),
                     bits, c.sgn[OP_I]);
            }
            wr(dst, c.at(OP_I, h, b, g, ch, c.rank_row[h][y], c.rank_col[h][x]), bits, v);
            ++n;
          }
        }
  CODAX_COUNT_IN(h, OP_I, n);
  CODAX_CLOCK(clock_transfer(c, OP_I, h, par, (double)n * bits, false));
}

// The partial-sum scratch: dense [N][G*K][P][Q].
inline i64 o_addr(const Ctx &c, int n, int g, int k, int p, int q) {
  return ((((i64)n * c.bound[DG] + g) * c.bound[DK] + k) * c.bound[DP] + p) * c.bound[DQ] + q;
}

// The output (strides c.ys) and the residual (c.rs): the layouts their tensors have in DRAM.
inline i64 strided(const i64 *st, int n, int g, int k, int p, int q) {
  return n * st[0] + g * st[1] + k * st[2] + p * st[3] + q * st[4];
}

// Where element (a, b, k, p, q) of (O, h)'s tile lives in its parent: the parent's on-chip buffer, or
// the DRAM output / partial-sum layout [N][G*K][P][Q].
inline i64 o_parent_at(const Ctx &c, int h, int par, int a, int b, int k, int p, int q) {
  const int *o = c.o[OP_O][h], *op = c.o[OP_O][par];
  if (par)
    return c.at(OP_O, par, o[DN] - op[DN] + a, o[DG] - op[DG] + b, o[DK] - op[DK] + k, o[DP] - op[DP] + p,
                o[DQ] - op[DQ] + q);
  return o_addr(c, o[DN] + a, o[DG] + b, o[DK] + k, o[DP] + p, o[DQ] + q);
}

// Output tile in: zero on its first visit (every enclosing reduction loop at 0), else the partial sums
// come back from the parent (read-modify-write at accumulator width).
inline void load_o(Ctx &c, int h, int par, bool first) {
  const int *e = c.e[OP_O][h];
  uint8_t *dst = c.buf(OP_O, h);
  const int bits = c.bits[OP_O];
  const uint8_t *src = par ? c.buf(OP_O, par) : c.dram.ps;
  i64 n = 0;
LOAD_O:
  for (int a = 0; a < e[DN]; ++a)
    for (int b = 0; b < e[DG]; ++b)
      for (int k = 0; k < e[DK]; ++k)
        for (int p = 0; p < e[DP]; ++p)
          for (int q = 0; q < e[DQ]; ++q) {
#pragma HLS PIPELINE II = 1
            i64 v = 0;
            if (!first) {
              v = rd(src, o_parent_at(c, h, par, a, b, k, p, q), bits, true);
              ++n;
            }
            wr(dst, c.at(OP_O, h, a, b, k, p, q), bits, v);
          }
  CODAX_COUNT_IN(h, OP_O, n);
  CODAX_CLOCK(first ? clock_first_visit(c, h) : clock_transfer(c, OP_O, h, par, (double)n * bits, false));
}

// The fused epilogue of one final output element (accumulator `acc` of channel `ch`).
inline i64 epilogue(const Ctx &c, i64 acc, int ch, i64 raddr) {
  const int32_t *d = c.d;
  const float lo = f32(d[D_CLAMP]), hi = f32(d[D_CLAMP + 1]);
  if (c.is_float) {
    float v = f32(acc);
    if (d[D_HAS_BIAS]) v = v + f32(rd(c.dram.wblob + d[D_B_OFF], ch, 32, false));
    if (d[D_HAS_RES]) v = v + f32(rd(c.dram.r, raddr, 32, false));
    v = v < lo ? lo : (v > hi ? hi : v);
    return bits32(v);
  }
  i64 a = acc;
  if (d[D_HAS_BIAS]) a = wrap(a + rd(c.dram.wblob + d[D_B_OFF], ch, 32, true), c.bits[OP_O]);
  const int res = d[D_HAS_RES] ? (int)rd(c.dram.r, raddr, c.rbits, c.rsgn) : 0;
  if (d[D_REQUANT]) {
    const float m = f32(rd(c.dram.wblob + d[D_M_OFF], ch, 32, false));
    return requant((int32_t)a, m, d[D_HAS_RES] != 0, res, c.zr, f32(d[D_M_RES]), c.zy, (int)lo, (int)hi);
  }
  i64 v = a + (d[D_HAS_RES] ? (i64)(res - c.zr) : 0);
  return v < (i64)lo ? (i64)lo : (v > (i64)hi ? (i64)hi : v);
}

// Output tile out: to its on-chip parent, or to DRAM -- partial sums until its last visit, then the
// final values through the epilogue at output width.
inline void store_o(Ctx &c, int h, int par, bool last) {
  const int *o = c.o[OP_O][h], *e = c.e[OP_O][h];
  const uint8_t *src = c.buf(OP_O, h);
  const int bits = c.bits[OP_O];
  uint8_t *dst = par ? c.buf(OP_O, par) : (last ? c.dram.y : c.dram.ps);
  i64 n = 0;
STORE_O:
  for (int a = 0; a < e[DN]; ++a)
    for (int b = 0; b < e[DG]; ++b)
      for (int k = 0; k < e[DK]; ++k)
        for (int p = 0; p < e[DP]; ++p)
          for (int q = 0; q < e[DQ]; ++q) {
#pragma HLS PIPELINE II = 1
            const i64 v = rd(src, c.at(OP_O, h, a, b, k, p, q), bits, true);
            if (par == 0 && last) {
              const int n_ = o[DN] + a, g_ = o[DG] + b, k_ = o[DK] + k, p_ = o[DP] + p, q_ = o[DQ] + q;
              wr(dst, strided(c.ys, n_, g_, k_, p_, q_), c.ybits,
                 epilogue(c, v, g_ * c.bound[DK] + k_, strided(c.rs, n_, g_, k_, p_, q_)));
            } else {
              wr(dst, o_parent_at(c, h, par, a, b, k, p, q), bits, v);
            }
            ++n;
          }
  CODAX_COUNT_OUT(h, OP_O, n);
  CODAX_CLOCK(clock_transfer(c, OP_O, h, par, (double)n * ((par == 0 && last) ? c.ybits : bits), true));
}

// Visit of the tile loops enclosing position `pos` (-1: none): first when every enclosing reduction
// loop is at 0, last when every one is at its end.
inline bool visit_is(const Ctx &c, int pos, bool last) {
  for (int j = 0; j <= pos; ++j) {
    if (!is_reduction(c.d[D_LOOP_DIM + j])) continue;
    if (last ? c.idx[j] != c.n[j] - 1 : c.idx[j] != 0) return false;
  }
  return true;
}

inline void loads_at(Ctx &c, int pos) {
  const int32_t *d = c.d;
  for (int t = 0; t < d[D_NTR]; ++t) {
    if (d[D_TR_POS + t] != pos) continue;
    const int X = d[D_TR_OP + t], h = d[D_TR_H + t], par = d[D_TR_PARENT + t];
    for (int dim = 0; dim < NDIMS; ++dim) {
      c.o[X][h][dim] = relevant(X, dim) ? c.cur[dim] : 0;
      const int tile = d[D_TR_TILE + t * NDIMS + dim];
      c.tile[X][h][dim] = tile;
      c.e[X][h][dim] = relevant(X, dim) ? imin(tile, c.bound[dim] - c.cur[dim]) : 1;
    }
    if (X == OP_I) {
      c.orow[h] = c.o[X][h][DP] * c.sh + c.o[X][h][DR] * c.dh;
      c.ocol[h] = c.o[X][h][DQ] * c.sw + c.o[X][h][DS] * c.dw;
    }
    if (d[D_DB + h]) c.pp[X][h] ^= 1;  // loads fill one copy while compute reads the other
    if (X == OP_W)
      load_w(c, h, par);
    else if (X == OP_I)
      load_i(c, h, par);
    else
      load_o(c, h, par, visit_is(c, pos, false));
  }
}

inline void stores_at(Ctx &c, int pos) {
  const int32_t *d = c.d;
  for (int t = d[D_NTR] - 1; t >= 0; --t) {  // inner levels first
    if (d[D_TR_POS + t] != pos || d[D_TR_OP + t] != OP_O) continue;
    store_o(c, d[D_TR_H + t], d[D_TR_PARENT + t], visit_is(c, pos, true));
  }
}

// ---- the PE array ---------------------------------------------------------------------------------
// One step of every PE. The loops are fully unrolled: ROWS x COLS PEs, each with one integer multiplier
// of (WBITS + 1) x (ABITS + 1) bits (operands minus their zero points) and, when FLOAT_OK, one fp32
// multiply-add. These are the engine's only multipliers.
template <int ROWS, int COLS, int WBITS, int ABITS, bool FLOAT_OK>
void pe_array_step(Ctx &c) {
  const int32_t *d = c.d;
  int inner[3] = {0, 0, 0};  // the innermost level holding each operand: the one the PEs read
  for (int t = 0; t < d[D_NTR]; ++t) {
    const int X = d[D_TR_OP + t], h = d[D_TR_H + t];
    if (h > inner[X]) inner[X] = h;
  }
  const int rdim = d[D_SP_DIM], cdim = d[D_SP_DIM + 1], rk = d[D_SP_K], ck = d[D_SP_K + 1];
  const uint8_t *wb = c.buf(OP_W, inner[OP_W]);
  const uint8_t *ib = c.buf(OP_I, inner[OP_I]);
  uint8_t *ob = c.buf(OP_O, inner[OP_O]);
  const int *ow = c.o[OP_W][inner[OP_W]], *oi = c.o[OP_I][inner[OP_I]], *oo = c.o[OP_O][inner[OP_O]];
  const int hi = inner[OP_I];
  i64 macs = 0;
PE_ROWS:
  for (int r = 0; r < ROWS; ++r) {
#pragma HLS UNROLL
  PE_COLS:
    for (int col = 0; col < COLS; ++col) {
#pragma HLS UNROLL
      if (r >= rk || col >= ck) continue;  // PEs the spatial mode leaves idle
      int ix[NDIMS];
      bool valid = true;
      for (int dim = 0; dim < NDIMS; ++dim) {
        int v = c.cur[dim];
        if (dim == rdim && dim == cdim)
          v += (r * ck + col) * d[D_SP_BLK + dim];
        else if (dim == rdim)
          v += r * d[D_SP_BLK + dim];
        else if (dim == cdim)
          v += col * d[D_SP_BLK + dim];
        ix[dim] = v;
        valid = valid && v < c.bound[dim];
      }
      if (!valid) continue;  // idle PE on a clipped tile
      const i64 wv = rd(wb,
                        c.at(OP_W, inner[OP_W], ix[DG] - ow[DG], ix[DK] - ow[DK], ix[DC] - ow[DC], ix[DR] - ow[DR],
                             ix[DS] - ow[DS]),
                        c.bits[OP_W], c.sgn[OP_W]);
      const i64 xv = rd(ib,
                        c.at(OP_I, hi, ix[DN] - oi[DN], ix[DG] - oi[DG], ix[DC] - oi[DC],
                             c.rank_row[hi][ix[DP] * c.sh + ix[DR] * c.dh - c.orow[hi]],
                             c.rank_col[hi][ix[DQ] * c.sw + ix[DS] * c.dw - c.ocol[hi]]),
                        c.bits[OP_I], c.sgn[OP_I]);
      const i64 oa = c.at(OP_O, inner[OP_O], ix[DN] - oo[DN], ix[DG] - oo[DG], ix[DK] - oo[DK], ix[DP] - oo[DP],
                          ix[DQ] - oo[DQ]);
      const i64 acc = rd(ob, oa, c.bits[OP_O], true);
      i64 next;
      if (FLOAT_OK && c.is_float) {
        next = bits32(f32(acc) + f32(wv) * f32(xv));  // MAC site: fp32
      } else {  // MAC site: integer, (w - zw) * (x - zx) into the accumulator, wrapping at its width
        const ap_int<WBITS + 1> dw = (ap_int<WBITS + 1>)(wv - c.zw);
        const ap_int<ABITS + 1> dx = (ap_int<ABITS + 1>)(xv - c.zx);
        const ap_int<WBITS + ABITS + 2> prod = dw * dx;
        next = wrap(acc + (i64)prod.to_int64(), c.bits[OP_O]);
      }
      wr(ob, oa, c.bits[OP_O], next);
      ++macs;
    }
  }
  CODAX_COUNT_MAC(macs);
#ifdef CODAX_COUNT
  Clock &k = clock();
  double start = k.t;
  for (int X = 0; X < 3; ++X) start = maxd(start, k.ready[X][inner[X]][c.pp[X][inner[X]]]);
  k.t = start + 1;  // one step of the whole array per cycle
  for (int X = 0; X < 3; ++X) {
    double &u = k.last_use[X][inner[X]][c.pp[X][inner[X]]];
    u = maxd(u, k.t);
  }
  k.end = maxd(k.end, k.t);
#endif
}

// ---- one layer --------------------------------------------------------------------------------------
template <int ROWS, int COLS, int WBITS, int ABITS, bool FLOAT_OK>
void run_layer(const int32_t *d, const Memory &mem, const Dram &dram) {
  static Ctx c;  // one engine, one layer in flight: its state is the engine's registers, not the stack
  memset(&c, 0, sizeof(c));
  c.d = d;
  c.mem = mem;
  c.dram = dram;
  for (int dim = 0; dim < NDIMS; ++dim) c.bound[dim] = d[D_DIM + dim];
  c.H = d[D_IN_HW];
  c.W = d[D_IN_HW + 1];
  c.sh = d[D_STRIDE];
  c.sw = d[D_STRIDE + 1];
  c.dh = d[D_DILATION];
  c.dw = d[D_DILATION + 1];
  c.pt = d[D_PAD];
  c.pl = d[D_PAD + 1];
  c.is_float = d[D_IS_FLOAT] != 0;
  c.bits[OP_W] = d[D_BITS];
  c.bits[OP_I] = d[D_BITS + 1];
  c.ybits = d[D_BITS + 2];
  c.bits[OP_O] = d[D_BITS + 3];
  c.rbits = d[D_BITS + 4];
  c.sgn[OP_W] = d[D_SIGNED] != 0 && !c.is_float;
  c.sgn[OP_I] = d[D_SIGNED + 1] != 0 && !c.is_float;
  c.sgn[OP_O] = !c.is_float;
  c.rsgn = d[D_SIGNED + 3] != 0 && !c.is_float;
  c.zw = d[D_ZERO];
  c.zx = d[D_ZERO + 1];
  c.zr = d[D_ZERO + 2];
  c.zy = d[D_ZERO + 3];
  c.pes_used = d[D_SP_K] * d[D_SP_K + 1];
  for (int a = 0; a < 5; ++a) {
    c.xs[a] = d[D_X_STRIDE + a];
    c.ys[a] = d[D_Y_STRIDE + a];
    c.rs[a] = d[D_R_STRIDE + a];
    c.ws[a] = d[D_W_STRIDE + a];
  }
  c.w_rt = d[D_W_SRC] != 0;
#ifdef CODAX_COUNT
  memset(&clock(), 0, sizeof(Clock));
#endif
  const int nl = d[D_NLOOPS];
  loads_at(c, -1);
  for (int j = 0; j < nl; ++j) {
    const int dim = d[D_LOOP_DIM + j];
    c.idx[j] = 0;
    c.n[j] = trips(d[D_LOOP_FACTOR + j], c.bound[dim] - c.cur[dim], d[D_LOOP_BLK + j]);
    loads_at(c, j);
  }
STEPS:
  for (;;) {
    pe_array_step<ROWS, COLS, WBITS, ABITS, FLOAT_OK>(c);
    int j = nl - 1;  // the innermost digit that can still advance
    while (j >= 0 && c.idx[j] + 1 >= c.n[j]) --j;
    for (int p = nl - 1; p >= j; --p) stores_at(c, p);
    if (j < 0) {
#ifdef CODAX_COUNT
      cycles_total() += clock().end + mem.pipeline_depth;
#endif
      break;
    }
    for (int k = j + 1; k < nl; ++k) {  // inner digits wrap to 0
      c.cur[d[D_LOOP_DIM + k]] -= c.idx[k] * d[D_LOOP_BLK + k];
      c.idx[k] = 0;
    }
    c.idx[j] += 1;
    c.cur[d[D_LOOP_DIM + j]] += d[D_LOOP_BLK + j];
    loads_at(c, j);
    for (int k = j + 1; k < nl; ++k) {
      const int dim = d[D_LOOP_DIM + k];
      c.n[k] = trips(d[D_LOOP_FACTOR + k], c.bound[dim] - c.cur[dim], d[D_LOOP_BLK + k]);
      loads_at(c, k);
    }
  }
}

}  // namespace codax

#endif  // CODAX_ENGINE_H
