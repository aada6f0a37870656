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
// The layer runs as tasks that meet only through queues ("instructions and dependence tokens"):
// decode walks the loops that carry transfers and emits LOAD / COMPUTE / STORE instructions; a load
// and a store task per port move tiles; the compute task runs each COMPUTE (the loops inside the
// innermost transfer) as one flattened pipelined loop. Double-buffered levels hand two copies back
// and forth, single-buffered levels one. Each task is an IP of its own (VTA's arrangement; engine.cpp
// generates them), with its own registers; C-simulation calls the same functions from a scheduler.
// Buffers store elements bit-packed at the layer's widths (weights, inputs) or at accumulator width
// (outputs), input windows without the rows/cols no output touches. DRAM tensors are bit-packed at
// their widths too: weights in tile order (one burst per tile); activations, outputs and run-time
// weight tensors at the element strides the descriptor gives (by default [N][G*C][H][W] and
// [N][G*K][P][Q]; matmuls with a batch: [G][N][C] and [G][N][K]).
//
// Build with -DCODAX_COUNT to count the words moved into and out of each level per operand and the
// valid MACs (they equal codax.hw.evaluate's words_in / words_out / macs exactly) and to account the
// cycles: each task keeps its own clock, each token carries its producer's completion time
// (docs/vitis.md, "Cycle accounting"). -DCODAX_TRACE prints every instruction's start and end.
#ifndef CODAX_ENGINE_H
#define CODAX_ENGINE_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

#include "ap_int.h"
#include "codax_requant.h"
#include "hls_stream.h"

// The hardware view of the sources: what Vitis HLS compiles (__SYNTHESIS__), or what g++ compiles with
// -DCODAX_SYNTHESIS_VIEW (tests/codegen/test_synthesis_view.py checks that the IPs then reference no
// C-simulation-only code: no allocation, no I/O, no scheduler, no accounting). C-simulation's scheduler,
// its accounting clocks and the tokens' time stamps exist only outside it.
#if defined(__SYNTHESIS__) || defined(CODAX_SYNTHESIS_VIEW)
#define CODAX_HW 1
#endif
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
  unsigned long long beats;  // beats the DRAM port moved (CODAX_COUNT), the descriptor's included
  unsigned long long ps_peak[CODAX_MAX_LEVELS];  // most tokens the ps[h] FIFO held at once
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

// The requantizer (codax::requant, in integer arithmetic) is codax_requant.h's, shared with the GEMM
// core's store IP.

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
  int axi_latency;  // cycles from a DRAM burst's request to its first beat (accel.yaml dram.latency)
  int beat_bytes;  // the DRAM port's data width: one beat of this many bytes per cycle (dram.bandwidth)
  bool stream_weights;
};


// ---- timing constants of the cycle accounting (docs/vitis.md lists each with its source) ------------
// A pipelined loop of T iterations at initiation interval II costs T * II + its depth (UG1399,
// "Pipelining Loops"). The compute task's loop depth is the accelerator's pipeline_depth (accel.yaml:
// operand read, multiply, accumulate, write back); a transfer's time is its beats at the port's width.
// Every DRAM transfer pays the DRAM latency once (Memory::axi_latency, accel.yaml dram.latency): its
// bursts are issued back to back and the m_axi adapter keeps several in flight, so only the first
// one's latency is exposed. A call's descriptor (DESC_WORDS words) crosses the same port: the call
// before prefetched it while its layer ran (its beats the first on the port, done at latency plus
// beats: the call waits only for what of that outlasted the layer before), or, for a run's first call
// or an out-of-order one, the call fetches it first, latency plus beats, before decode can start.
const int COMPUTE_II = 1;

inline double &cycles_total() {
  static double c = 0;
  return c;
}

// The last call's exposed descriptor fetch (CODAX_COUNT): cycles it waited for its descriptor.
inline double &last_fetch_cycles() {
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

// ---- the DRAM port ---------------------------------------------------------------------------------
// One port `beat_bytes` wide (top.cpp: every m_axi argument in one bundle, widened to that width).
// A transfer walks its elements in order and the port moves a beat whenever the next element lies in
// a beat it does not hold: a contiguous row is one burst of ceil(bytes / width) beats (plus one where
// it starts unaligned), rows closer together than a beat share beats, padding is never read. Beats are
// counted from the element's byte address in its region (regions are beat-aligned: the schedule
// aligns every tensor and weights part to 64 bytes). In hardware each beat is one read (or one write
// with byte strobes) of the wide port and the elements are unpacked from (packed into) it;
// C-simulation moves the same bytes element by element and counts the beats they span.
struct Beats {
  i64 region_bits;  // the tensor's bit offset in its region
  int bytes;  // the port's width
  i64 held;  // the beat the port holds (-1: none)
  i64 n;  // beats moved
  void open(i64 region_offset_bytes, int beat_bytes) {
    // a call of one layer on its own passes each tensor's pointer (offsets 0 or -1: none): aligned
    region_bits = region_offset_bytes > 0 ? region_offset_bytes * 8 : 0;
    bytes = beat_bytes;
    held = -1;
    n = 0;
  }
  void touch(i64 elem, int bits) {
    const i64 b0 = region_bits + elem * bits;
    const i64 first = (b0 >> 3) / bytes, last = ((b0 + bits - 1) >> 3) / bytes;
    for (i64 b = first; b <= last; ++b)
      if (b != held) {
        held = b;
        ++n;
      }
  }
};

// What a copy of a tile buffer holds besides its data: the tile's origin, clipped extent and grid step,
// and for input windows their origin in padded coordinates and their rank tables (window row / col ->
// stored position: a strided window is stored without the rows / cols no output touches). The task
// that fills a copy writes its header; the tasks it hands the copy to read it. The dependence tokens
// that guard the copy's data guard its header: in hardware a header is a few registers (and, for the
// rank tables, a small memory) beside the copy, shared by the same tasks as the copy.
struct TileMeta {
  int o[NDIMS], e[NDIMS], tile[NDIMS];
  int orow, ocol;
};

struct Headers {
  TileMeta meta[3][MAX_LEVELS][2];  // per (operand, level, copy)
  int rank_row[MAX_LEVELS][2][MAX_WINDOW], rank_col[MAX_LEVELS][2][MAX_WINDOW];  // per (level, copy)
};

// One task's registers while a layer is in flight: the layer's constants, decoded from its descriptor
// (every task decodes the fields it needs), and the task's own view of the buffers it works on. Every
// task has its own Ctx (Tasks, below): tasks share nothing but the buffers and their headers, DRAM and
// the queues. A task binds the copies an instruction names (bind) before it runs.
struct Ctx {
  const int32_t *d;
  Memory mem;
  Dram dram;
  Headers *hd;  // the buffers' headers, shared
  int bound[NDIMS];
  int H, W, sh, sw, dh, dw, pt, pl;
  int bits[3];  // on-chip element widths: W, I, O
  bool sgn[3];
  int ybits, rbits;
  bool rsgn, is_float;
  int zw, zx, zr, zy;
  i64 xs[5], ys[5], rs[5], ws[5];  // DRAM element strides (descriptor X/Y/R/W_STRIDE)
  bool w_rt;  // weights come from the run-time tensor `wt`, strided, not from the blob's tile order
  Beats port;  // the DRAM port's beats of the transfer in progress
  Beats rport;  // the port's second beat register: the residual the final store reads beside it
  int inner[3];  // the innermost level holding each operand: the one the PEs read
  int o[3][MAX_LEVELS][NDIMS];  // view: origin of the tile held by (operand, level)
  int e[3][MAX_LEVELS][NDIMS];  // its clipped extent
  int tile[3][MAX_LEVELS][NDIMS];  // its unclipped extent (the tile grid's step)
  int orow[MAX_LEVELS], ocol[MAX_LEVELS];  // input windows: origin in padded coordinates
  int pp[3][MAX_LEVELS];  // view: the copy bound per (operand, level)
  int cur[NDIMS];  // the compute task's current tile base of every dim
  int idx[MAX_LOOPS], n[MAX_LOOPS];  // the compute task's loop counters
  int pes_used;
  int first_loop;  // the loops a COMPUTE runs: those inside the innermost transfer
  int credit[3][MAX_LEVELS];  // a filler's free copies not yet used this layer (one per buffer copy)

  int shape(int X, int h, int a) const { return d[D_BUF_SHAPE + (X * MAX_LEVELS + h) * BUF_RANK + a]; }
  uint8_t *buf(int X, int h) const {
    const int k = X * MAX_LEVELS + h;
    return mem.arr[h][X] + d[D_BUF_BASE + k] + pp[X][h] * d[D_BUF_COPY + k];
  }
  int *rrow(int h) { return hd->rank_row[h][pp[OP_I][h]]; }
  int *rcol(int h) { return hd->rank_col[h][pp[OP_I][h]]; }
  const int *rrow(int h) const { return hd->rank_row[h][pp[OP_I][h]]; }
  const int *rcol(int h) const { return hd->rank_col[h][pp[OP_I][h]]; }
  i64 at(int X, int h, int a, int b, int c, int e4, int f) const {
    return ((((i64)a * shape(X, h, 1) + b) * shape(X, h, 2) + c) * shape(X, h, 3) + e4) * shape(X, h, 4) + f;
  }
  // Point the view of (X, h) at `copy` and at the tile its header records.
  void bind(int X, int h, int copy) {
    pp[X][h] = copy;
    const TileMeta &m = hd->meta[X][h][copy];
    memcpy(o[X][h], m.o, sizeof(m.o));
    memcpy(e[X][h], m.e, sizeof(m.e));
    memcpy(tile[X][h], m.tile, sizeof(m.tile));
    if (X == OP_I) {
      orow[h] = m.orow;
      ocol[h] = m.ocol;
    }
  }
};

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
// grid the DRAM-level weight tiles lie on, each tile contiguous and exactly its clipped extent (edge
// tiles are smaller, not padded), so a tile is one burst with no gap. With the tiles in row-major
// order of their grid index (g, k, c, r, s), the tiles before tile o add up, dim by dim, to
//   sum_d o[d] * prod_{d' after d} bound[d'] * prod_{d' before d} e[d']
// (every tile before it along dim d is a full tile, whose extents along the earlier dims are this
// tile's). Inside a tile the elements are row-major over its extents.
inline i64 w_tile_base(const Ctx &c, int h) {
  static const int D5[5] = {DG, DK, DC, DR, DS};
  const int *o = c.o[OP_W][h], *e = c.e[OP_W][h];
  i64 base = 0;
  for (int a = 0; a < 5; ++a) {
    i64 t = o[D5[a]];
    for (int b = a + 1; b < 5; ++b) t *= c.bound[D5[b]];
    for (int b = 0; b < a; ++b) t *= e[D5[b]];
    base += t;
  }
  return base;
}

// A run-time weight tensor is read through its layout's strides instead.
inline i64 w_dram_at(const Ctx &c, const int *o, int g, int k, int ch, int r, int s) {
  return (o[DG] + g) * c.ws[0] + (o[DK] + k) * c.ws[1] + (o[DC] + ch) * c.ws[2] + (o[DR] + r) * c.ws[3] +
         (o[DS] + s) * c.ws[4];
}

inline i64 load_w(Ctx &c, int h, int par) {
  const int *o = c.o[OP_W][h], *e = c.e[OP_W][h];
  uint8_t *dst = c.buf(OP_W, h);
  const int bits = c.bits[OP_W];
  const uint8_t *src = par ? c.buf(OP_W, par) : (c.w_rt ? c.dram.wt : c.dram.wblob + c.d[D_W_OFF]);
  const int *op = c.o[OP_W][par];
  const i64 base = (par || c.w_rt) ? 0 : w_tile_base(c, h);
  if (par == 0) c.port.open(c.d[D_W_OFF], c.mem.beat_bytes);  // wt is act + W_OFF, the blob wblob + W_OFF
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
              a = base + (((((i64)g * e[DK] + k) * e[DC] + ch) * e[DR] + r) * e[DS] + s);
            else
              a = c.at(OP_W, par, o[DG] - op[DG] + g, o[DK] - op[DK] + k, o[DC] - op[DC] + ch, o[DR] - op[DR] + r,
                       o[DS] - op[DS] + s);
            if (par == 0) c.port.touch(a, bits);
            wr(dst, c.at(OP_W, h, g, k, ch, r, s), bits, rd(src, a, bits, c.sgn[OP_W]));
            ++n;
          }
  CODAX_COUNT_IN(h, OP_W, n);
  return n * bits;
}

inline void rank_window(int *rank, int pe, int re, int stride, int dil) {
  int k = 0;
  for (int y = 0; y < window(pe, re, stride, dil); ++y) rank[y] = touched(y, pe, re, stride, dil) ? k++ : -1;
}

inline i64 load_i(Ctx &c, int h, int par) {
  const int *o = c.o[OP_I][h], *e = c.e[OP_I][h];
  uint8_t *dst = c.buf(OP_I, h);
  const int bits = c.bits[OP_I];
  const int wh = window(e[DP], e[DR], c.sh, c.dh), ww = window(e[DQ], e[DS], c.sw, c.dw);
  rank_window(c.rrow(h), e[DP], e[DR], c.sh, c.dh);
  rank_window(c.rcol(h), e[DQ], e[DS], c.sw, c.dw);
  const int *op = c.o[OP_I][par];
  const uint8_t *src = par ? c.buf(OP_I, par) : c.dram.x;
  if (par == 0) c.port.open(c.d[D_X_OFF], c.mem.beat_bytes);
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
              if (inside) c.port.touch(a, bits);  // padding is written on chip, never read
              v = inside ? rd(src, a, bits, c.sgn[OP_I]) : (c.is_float ? 0 : c.zx);
            } else {
              v = rd(src,
                     c.at(OP_I, par, o[DN] - op[DN] + b, o[DG] - op[DG] + g, o[DC] - op[DC] + ch,
                          c.rrow(par)[c.orow[h] - c.orow[par] + y], c.rcol(par)[c.ocol[h] - c.ocol[par] + x]),
                     bits, c.sgn[OP_I]);
            }
            wr(dst, c.at(OP_I, h, b, g, ch, c.rrow(h)[y], c.rcol(h)[x]), bits, v);
            ++n;
          }
        }
  CODAX_COUNT_IN(h, OP_I, n);
  return n * bits;
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

// Output tile in: the partial sums come back from the parent (read-modify-write at accumulator width).
// On its first visit (every enclosing reduction loop at 0) nothing moves: the tile's first
// accumulation into each element starts from 0 instead of reading it (pe_array_step's `init`), and
// every level above it is written by a store before it is read, so no level is ever zero-filled.
inline i64 load_o(Ctx &c, int h, int par, bool first) {
  if (first) return 0;
  const int *e = c.e[OP_O][h];
  uint8_t *dst = c.buf(OP_O, h);
  const int bits = c.bits[OP_O];
  const uint8_t *src = par ? c.buf(OP_O, par) : c.dram.ps;
  if (par == 0) c.port.open(c.d[D_PS_OFF], c.mem.beat_bytes);
  i64 n = 0;
LOAD_O:
  for (int a = 0; a < e[DN]; ++a)
    for (int b = 0; b < e[DG]; ++b)
      for (int k = 0; k < e[DK]; ++k)
        for (int p = 0; p < e[DP]; ++p)
          for (int q = 0; q < e[DQ]; ++q) {
#pragma HLS PIPELINE II = 1
            const i64 at = o_parent_at(c, h, par, a, b, k, p, q);
            if (par == 0) c.port.touch(at, bits);
            wr(dst, c.at(OP_O, h, a, b, k, p, q), bits, rd(src, at, bits, true));
            ++n;
          }
  CODAX_COUNT_IN(h, OP_O, n);
  return n * bits;
}

// The fused epilogue of one final output element (accumulator `acc` of channel `ch`). FLOAT_OK: the
// engine runs float layers (accel.yaml); only then is the float32 epilogue built, as the PE array's
// float MAC is. Integer layers take integers only: the clamp bounds are read from their float32 bit
// patterns, the requantization is requant's integer emulation of float32.
template <bool FLOAT_OK>
inline i64 epilogue(const Ctx &c, i64 acc, int ch, i64 raddr) {
  const int32_t *d = c.d;
  if (FLOAT_OK && c.is_float) {
    const float lo = f32(d[D_CLAMP]), hi = f32(d[D_CLAMP + 1]);
    float v = f32(acc);
    if (d[D_HAS_BIAS]) v = v + f32(rd(c.dram.wblob + d[D_B_OFF], ch, 32, false));
    if (d[D_HAS_RES]) v = v + f32(rd(c.dram.r, raddr, 32, false));
    v = v < lo ? lo : (v > hi ? hi : v);
    return bits32(v);
  }
  const i64 lo = f32_bits_to_int((uint32_t)d[D_CLAMP]), hi = f32_bits_to_int((uint32_t)d[D_CLAMP + 1]);
  i64 a = acc;
  if (d[D_HAS_BIAS]) a = wrap(a + rd(c.dram.wblob + d[D_B_OFF], ch, 32, true), c.bits[OP_O]);
  const i64 res = d[D_HAS_RES] ? rd(c.dram.r, raddr, c.rbits, c.rsgn) : 0;
  if (d[D_REQUANT]) {
    const uint32_t m = (uint32_t)rd(c.dram.wblob + d[D_M_OFF], ch, 32, false);
    return requant((int32_t)a, m, d[D_HAS_RES] != 0, res, c.zr, (uint32_t)d[D_M_RES], c.zy, lo, hi);
  }
  const i64 v = a + (d[D_HAS_RES] ? res - c.zr : 0);
  return v < lo ? lo : (v > hi ? hi : v);
}

// Output tile out: to its on-chip parent, or to DRAM -- partial sums until its last visit, then the
// final values through the epilogue at output width.
template <bool FLOAT_OK>
inline i64 store_o(Ctx &c, int h, int par, bool last) {
  const int *o = c.o[OP_O][h], *e = c.e[OP_O][h];
  const uint8_t *src = c.buf(OP_O, h);
  const int bits = c.bits[OP_O];
  uint8_t *dst = par ? c.buf(OP_O, par) : (last ? c.dram.y : c.dram.ps);
  if (par == 0) {
    c.port.open(c.d[last ? D_Y_OFF : D_PS_OFF], c.mem.beat_bytes);
    c.rport.open(c.d[D_R_OFF], c.mem.beat_bytes);
  }
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
              const i64 at = strided(c.ys, n_, g_, k_, p_, q_), rat = strided(c.rs, n_, g_, k_, p_, q_);
              c.port.touch(at, c.ybits);
              if (c.d[D_HAS_RES]) c.rport.touch(rat, c.rbits);
              wr(dst, at, c.ybits, epilogue<FLOAT_OK>(c, v, g_ * c.bound[DK] + k_, rat));
            } else {
              const i64 at = o_parent_at(c, h, par, a, b, k, p, q);
              if (par == 0) c.port.touch(at, bits);
              wr(dst, at, bits, v);
            }
            ++n;
          }
  if (par == 0) c.port.n += c.rport.n;  // both streams' beats cross the one port
  CODAX_COUNT_OUT(h, OP_O, n);
  return n * ((par == 0 && last) ? c.ybits : bits);
}

// ---- the PE array ---------------------------------------------------------------------------------
// One step of every PE. The loops are fully unrolled: ROWS x COLS PEs, each with one integer multiplier
// of (WBITS + 1) x (ABITS + 1) bits (operands minus their zero points) and, when FLOAT_OK, one fp32
// multiply-add. These are the engine's only multipliers.
// `init`: this step holds the first MAC of every output it touches on the tile's first visit (every
// reduction loop at 0), so the accumulator starts from 0 instead of being read: the PE whose index
// along a reduction dim unrolled on the array is 0 selects 0 (a multiplexer, no extra cycle); the
// other PEs of that reduction add to it in order, as they always do.
template <int ROWS, int COLS, int WBITS, int ABITS, bool FLOAT_OK>
void pe_array_step(Ctx &c, bool init) {
  const int32_t *d = c.d;
  const int *inner = c.inner;  // the innermost level holding each operand: the one the PEs read
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
                             c.rrow(hi)[ix[DP] * c.sh + ix[DR] * c.dh - c.orow[hi]],
                             c.rcol(hi)[ix[DQ] * c.sw + ix[DS] * c.dw - c.ocol[hi]]),
                        c.bits[OP_I], c.sgn[OP_I]);
      const i64 oa = c.at(OP_O, inner[OP_O], ix[DN] - oo[DN], ix[DG] - oo[DG], ix[DK] - oo[DK], ix[DP] - oo[DP],
                          ix[DQ] - oo[DQ]);
      int red = 0;  // the PE's index along the reduction dims the array unrolls
      if (rdim == cdim && is_reduction(rdim))
        red = r * ck + col;
      else
        red = (is_reduction(rdim) ? r : 0) + (is_reduction(cdim) ? col : 0);
      const i64 acc = (init && red == 0) ? 0 : rd(ob, oa, c.bits[OP_O], true);
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
}


// ---- instructions and dependence tokens -----------------------------------------------------------
// A layer runs as four kinds of task that meet only through queues:
// - decode walks the tile loops that carry transfers (the odometer, DRAM level outermost) and emits
//   instructions in program order: a LOAD per tile moved into a level, a COMPUTE per run of PE-array
//   steps with no transfer in between (the loops inside the innermost transfer), a STORE per output
//   tile moved out;
// - one load task and one store task per port (level 0 is the DRAM port, level h the port of on-chip
//   level h to the levels inside it), each consuming its instruction queue in order: each port is its
//   own DMA engine, as the cost model assumes;
// - one compute task, the PE array.
// A buffer copy passes between tasks by dependence tokens, one FIFO per (kind, operand, level), each
// token carrying, in C-simulation, its producer's completion time (the cycle accounting's):
//   full[X][h]  the filler of a copy -> its reader (compute, or the load task filling level h's child)
//   free[X][h]  the last reader of a copy -> its filler (W, I; for O the store that emptied it):
//               a filler starts a layer with one credit per copy and pops free tokens once they are
//               used, so a double-buffered level loads the next tile while the current one is read,
//               a single-buffered level waits for the last read
//   done[h]     the last writer of an output tile (compute, or the store task of level h) -> the store
//               that moves it out
//   ps[h]       a store of partial sums -> the load that reads them back on the tile's next visit.
// Every token a task pops was pushed by an instruction earlier in program order, so the tasks never
// deadlock while no token FIFO is full: full, free and done FIFOs hold at most a level's copies, ps
// FIFOs at most NestPlan.ps_tokens (report.json token_fifos).
struct Insn {  // a LOAD or a STORE
  bool begin;  // the task's first instruction of the layer: it decodes the layer's constants first
  int X, h, par, copy, pcopy;
  bool first;  // LOAD O: the tile's first visit (nothing moves: the accumulation starts from 0)
  bool last;  // STORE: the tile's last visit (final values; to DRAM through the epilogue)
  bool pop_pfull;  // LOAD: the first child of the parent's tile
  bool push_pfree;  // LOAD W/I: the last child of the parent's tile
  bool push_pdone;  // STORE: the last child stored into the parent's tile
  int o[NDIMS], e[NDIMS], tile[NDIMS];  // LOAD: the tile
  int orow, ocol;
};

struct CInsn {  // a COMPUTE
  bool begin;  // the task's first instruction of the layer
  int cur[NDIMS];  // the tile base where the run starts
  int copy[3];  // the copies of the innermost levels it reads
  bool acquire[3];  // the first run on a new tile of the operand: pop its full token
  bool release[3];  // the last run on it: hand it back (free for W/I, done for O)
  bool o_init;  // every reduction loop outside the run is at 0: the run holds each output's first MACs
};

#ifndef CODAX_QUEUE_DEPTH
#define CODAX_QUEUE_DEPTH 256
#endif

// A dependence token: in hardware one handshake on a FIFO of tokens (VTA's hls::stream<bool>). In
// C-simulation it also carries its producer's completion time, for the cycle accounting.
#ifndef CODAX_HW
struct Token {
  double t;
};
inline Token stamp(double t) {
  Token k;
  k.t = t;
  return k;
}
#else
struct Token {
  bool v;
};
inline Token stamp(double) {
  Token k;
  k.v = true;
  return k;
}
#endif
typedef hls::stream<Token> TokenQueue;

// The token FIFOs, one per (kind, operand, level). In hardware: full, free and done FIFOs as deep as
// the copies they count (2); a ps FIFO as deep as NestPlan.ps_tokens (report.json token_fifos).
// C-simulation's streams are unbounded.
struct TokenQueues {
  TokenQueue full[3][MAX_LEVELS], free[3][MAX_LEVELS], done[MAX_LEVELS], ps[MAX_LEVELS];
};

// ---- the cycle accounting (C-simulation only) -------------------------------------------------------
#ifndef CODAX_HW
// Each task's clock, and each port's traffic so far (its load and store tasks share its width).
struct Clock {
  double t_load[MAX_LEVELS], t_store[MAX_LEVELS], t_compute, port_work[MAX_LEVELS];
  double end;
};

inline Clock &clock() {
  static Clock k;
  return k;
}

inline double maxd(double a, double b) { return a > b ? a : b; }

// `bits` cross port `par` (into or out of level `child`): they take their beats at the port's width
// (for the DRAM port, the beats the transfer's addresses touched, c.port), and a per-PE register file
// takes at least its share per PE at its own port's width. The port's load and store tasks share its
// width: no more beats cross it than one per cycle since the layer began. A DRAM transfer pays the
// AXI latency once.
inline double transfer_end(const Ctx &c, int par, int child, double bits, double start) {
  Clock &k = clock();
  const double beats = par == 0 ? (double)c.port.n : bits / 8.0 / c.mem.port_bytes[par];
  const double lat = par == 0 ? c.mem.axi_latency : 0;
  double dur = beats;
  if (child && c.mem.per_pe[child]) dur = maxd(dur, bits / c.pes_used / 8.0 / c.mem.port_bytes[child]);
  k.port_work[par] += beats;
#ifdef CODAX_COUNT
  if (par == 0) counts().beats += c.port.n;
#endif
  return maxd(start + lat + dur, k.port_work[par] + lat);
}
#endif

// ---- the tasks ---------------------------------------------------------------------------------------
// Each runs one instruction per call, as VTA's load / compute / store modules do, on its own registers
// (its Ctx); `*_ready` is what its token FIFOs must hold for the call not to block (C-simulation's
// scheduler asks before calling; in hardware the task blocks on the FIFO).

// LOAD: fill copy `copy` of (X, h) from the parent's copy `pcopy` (or DRAM).
inline bool load_ready(const Ctx &c, TokenQueue full[3][MAX_LEVELS], TokenQueue free[3][MAX_LEVELS],
                       TokenQueue ps[MAX_LEVELS], const Insn &i) {
  if (!c.credit[i.X][i.h] && free[i.X][i.h].empty()) return false;
  if (i.pop_pfull && full[i.X][i.par].empty()) return false;
  if (i.X == OP_O && !i.first && ps[i.h].empty()) return false;
  return true;
}

inline void load_task(Ctx &c, TokenQueue full[3][MAX_LEVELS], TokenQueue free[3][MAX_LEVELS],
                      TokenQueue ps[MAX_LEVELS], const Insn &i) {
  // a level's copies start the layer free: the filler uses its credits first, then the readers' tokens
  Token k_free = stamp(0), k_pfull = stamp(0), k_ps = stamp(0);
  if (c.credit[i.X][i.h])
    --c.credit[i.X][i.h];
  else
    k_free = free[i.X][i.h].read();
  if (i.pop_pfull) k_pfull = full[i.X][i.par].read();
  if (i.X == OP_O && !i.first) k_ps = ps[i.h].read();
  TileMeta &m = c.hd->meta[i.X][i.h][i.copy];  // the copy's header: the tile it will hold
  memcpy(m.o, i.o, sizeof(m.o));
  memcpy(m.e, i.e, sizeof(m.e));
  memcpy(m.tile, i.tile, sizeof(m.tile));
  m.orow = i.orow;
  m.ocol = i.ocol;
  c.bind(i.X, i.h, i.copy);
  if (i.par) c.bind(i.X, i.par, i.pcopy);
  i64 bits;
  if (i.X == OP_W)
    bits = load_w(c, i.h, i.par);
  else if (i.X == OP_I)
    bits = load_i(c, i.h, i.par);
  else
    bits = load_o(c, i.h, i.par, i.first);
  Token k_full = stamp(0), k_done = stamp(0);
#ifndef CODAX_HW
  Clock &k = clock();
  double start = maxd(maxd(k.t_load[i.par], k_free.t), maxd(k_pfull.t, k_ps.t));
  // a first visit of an output tile moves nothing: it only hands the free copy on, in order
  const double end = (i.X == OP_O && i.first) ? start : transfer_end(c, i.par, i.h, (double)bits, start);
  k.t_load[i.par] = end;
  k.end = maxd(k.end, end);
#ifdef CODAX_TRACE
  fprintf(stderr, "L%d X%d h%d %s start %.1f end %.1f beats %lld\n", i.par, i.X, i.h, i.first ? "first" : "", start,
          end, i.par == 0 && !(i.X == OP_O && i.first) ? (long long)c.port.n : 0LL);
#endif
  // streamed weights enter the array as they arrive: compute may start with the first ones
  const bool streamed = i.X == OP_W && i.par == 0 && c.mem.stream_weights;
  k_full = stamp(streamed ? start + c.mem.axi_latency : end);
  k_done = stamp(end);
#else
  (void)k_free;
  (void)k_pfull;
  (void)k_ps;
  (void)bits;
#endif
  full[i.X][i.h].write(k_full);
  if (i.push_pfree) free[i.X][i.par].write(k_done);
}

// STORE: move copy `copy` of output level h out to the parent's copy `pcopy` (or DRAM).
inline bool store_ready(TokenQueue done[MAX_LEVELS], const Insn &i) { return !done[i.h].empty(); }

template <bool FLOAT_OK>
inline void store_task(Ctx &c, TokenQueue free[3][MAX_LEVELS], TokenQueue done[MAX_LEVELS],
                       TokenQueue ps[MAX_LEVELS], const Insn &i) {
  const Token k_done = done[i.h].read();
  c.bind(OP_O, i.h, i.copy);
  if (i.par) c.bind(OP_O, i.par, i.pcopy);
  const i64 bits = store_o<FLOAT_OK>(c, i.h, i.par, i.last);
  Token k_end = stamp(0);
#ifndef CODAX_HW
  Clock &k = clock();
  const double start = maxd(k.t_store[i.par], k_done.t);
  const double end = transfer_end(c, i.par, i.par, (double)bits, start);
  k.t_store[i.par] = end;
  k.end = maxd(k.end, end);
#ifdef CODAX_TRACE
  fprintf(stderr, "S%d h%d %s start %.1f end %.1f beats %lld\n", i.par, i.h, i.last ? "last" : "", start, end,
          i.par == 0 ? (long long)c.port.n : 0LL);
#endif
  k_end = stamp(end);
#else
  (void)k_done;
  (void)bits;
#endif
  free[OP_O][i.h].write(k_end);
  if (!i.last) ps[i.h].write(k_end);
#ifdef CODAX_COUNT
  if (!i.last && ps[i.h].size() > counts().ps_peak[i.h]) counts().ps_peak[i.h] = ps[i.h].size();
#endif
  if (i.push_pdone) done[i.par].write(k_end);
}

// COMPUTE: one run of PE-array steps over the loops inside the innermost transfer, flattened into one
// pipelined loop (one step of the whole array per cycle).
inline bool compute_ready(const Ctx &c, TokenQueue full[3][MAX_LEVELS], const CInsn &i) {
  for (int X = 0; X < 3; ++X)
    if (i.acquire[X] && c.inner[X] && full[X][c.inner[X]].empty()) return false;
  return true;
}

template <int ROWS, int COLS, int WBITS, int ABITS, bool FLOAT_OK>
void compute_task(Ctx &c, TokenQueue full[3][MAX_LEVELS], TokenQueue free[3][MAX_LEVELS],
                  TokenQueue done[MAX_LEVELS], const CInsn &i) {
  const int32_t *d = c.d;
  const int first_loop = c.first_loop;
  Token k_in[3] = {stamp(0), stamp(0), stamp(0)};
  for (int X = 0; X < 3; ++X) {
    if (!c.inner[X]) continue;
    if (i.acquire[X]) k_in[X] = full[X][c.inner[X]].read();
    c.bind(X, c.inner[X], i.copy[X]);
  }
  memcpy(c.cur, i.cur, sizeof(c.cur));
  const int nl = d[D_NLOOPS];
  for (int k = first_loop; k < nl; ++k) {
    const int dim = d[D_LOOP_DIM + k];
    c.idx[k] = 0;
    c.n[k] = trips(d[D_LOOP_FACTOR + k], c.bound[dim] - c.cur[dim], d[D_LOOP_BLK + k]);
  }
  i64 steps = 0;
COMPUTE:
  for (;;) {
#pragma HLS PIPELINE II = 1
    bool init = i.o_init;  // and every reduction loop of the run at 0
    for (int k = first_loop; k < nl; ++k) init = init && !(is_reduction(d[D_LOOP_DIM + k]) && c.idx[k] != 0);
    pe_array_step<ROWS, COLS, WBITS, ABITS, FLOAT_OK>(c, init);
    ++steps;
    int j = nl - 1;  // the innermost digit of the run that can still advance
    while (j >= first_loop && c.idx[j] + 1 >= c.n[j]) --j;
    if (j < first_loop) break;
    for (int k = j + 1; k < nl; ++k) {  // inner digits wrap to 0
      c.cur[d[D_LOOP_DIM + k]] -= c.idx[k] * d[D_LOOP_BLK + k];
      c.idx[k] = 0;
    }
    c.idx[j] += 1;
    c.cur[d[D_LOOP_DIM + j]] += d[D_LOOP_BLK + j];
    for (int k = j + 1; k < nl; ++k) {
      const int dim = d[D_LOOP_DIM + k];
      c.n[k] = trips(d[D_LOOP_FACTOR + k], c.bound[dim] - c.cur[dim], d[D_LOOP_BLK + k]);
    }
  }
  Token k_end = stamp(0);
#ifndef CODAX_HW
  Clock &k = clock();
  double start = k.t_compute;
  for (int X = 0; X < 3; ++X) start = maxd(start, k_in[X].t);
  const double end = start + (double)steps * COMPUTE_II + c.mem.pipeline_depth;
  k.t_compute = end;
  k.end = maxd(k.end, end);
#ifdef CODAX_TRACE
  fprintf(stderr, "C steps %lld start %.1f end %.1f\n", (long long)steps, start, end);
#endif
  k_end = stamp(end);
#else
  (void)k_in;
  (void)steps;
#endif
  for (int X = 0; X < 3; ++X) {
    if (!c.inner[X] || !i.release[X]) continue;
    if (X == OP_O)
      done[c.inner[X]].write(k_end);
    else
      free[X][c.inner[X]].write(k_end);
  }
}

// ---- decode -------------------------------------------------------------------------------------------
// The odometer over the loops that carry transfers (0 .. last): each advance stores the output tiles
// whose loops ended, loads the tiles whose relevant index changed, then emits one COMPUTE for the
// loops inside.
struct Decode {
  int cur[NDIMS];
  int idx[MAX_LOOPS], n[MAX_LOOPS];
  int pp[3][MAX_LEVELS];  // the copy each level fills next (ping-pong)
  bool fresh[3][MAX_LEVELS];  // a tile loaded that no reader has taken yet
  int pos[3][MAX_LEVELS];  // where each (operand, level) transfer sits in the loop list
  int last;  // the innermost loop with a transfer after it (-1: none)
  bool begun_load[MAX_LEVELS], begun_store[MAX_LEVELS], begun_compute;  // a first instruction was sent
};

// The digit that advances next among loops 0..upto (-1: they are all at their end).
inline int next_advance(const Decode &s, int upto) {
  int j = upto;
  while (j >= 0 && s.idx[j] + 1 >= s.n[j]) --j;
  return j;
}

// Visit of the tile loops enclosing position `pos` (-1: none): first when every enclosing reduction
// loop is at 0, last when every one is at its end.
inline bool visit_is(const Ctx &c, const Decode &s, int pos, bool last) {
  for (int j = 0; j <= pos; ++j) {
    if (!is_reduction(c.d[D_LOOP_DIM + j])) continue;
    if (last ? s.idx[j] != s.n[j] - 1 : s.idx[j] != 0) return false;
  }
  return true;
}

// ---- one layer --------------------------------------------------------------------------------------
// The layer's constants, as every task decodes them from the descriptor (on chip: the fetched copy).
inline void decode_layer(Ctx &c, const int32_t *d, const Memory &mem, const Dram &dram, Headers *hd) {
  memset(&c, 0, sizeof(c));
  c.d = d;
  c.mem = mem;
  c.dram = dram;
  c.hd = hd;
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
  int last = -1;
  for (int k = 0; k < d[D_NTR]; ++k) {
    const int X = d[D_TR_OP + k], h = d[D_TR_H + k];
    if (h > c.inner[X]) c.inner[X] = h;
    if (d[D_TR_POS + k] > last) last = d[D_TR_POS + k];
  }
  c.first_loop = last + 1;
  for (int h = 1; h < MAX_LEVELS; ++h)
    for (int X = 0; X < 3; ++X) c.credit[X][h] = d[D_DB + h] ? 2 : 1;
}

// ---- the engine's IPs ------------------------------------------------------------------------------
// In hardware the engine is one IP per task (VTA's arrangement: fetch, load, compute, store), generated
// per engine in engine.cpp: codax_<engine>_decode, _load_<port>, _compute and _store_<port>. They are
// joined by AXI-stream FIFOs of instructions and tokens and share the buffers, their headers and the
// descriptor's on-chip copy; each is restarted whenever it returns and blocks on nothing: a step reads
// the task's next instruction if it holds none, and runs it only when its tokens are there (it returns
// false otherwise). C-simulation calls the same functions from a scheduler, as VTA's vta() calls its
// modules. A call starts with every token FIFO empty (they are reset between calls).
template <class I>
struct TaskRegs {  // a task's registers: its view of the layer, the instruction waiting for tokens
  Ctx c;
  bool has;
  I i;
};
typedef TaskRegs<Insn> LoadIP;
typedef TaskRegs<Insn> StoreIP;
typedef TaskRegs<CInsn> ComputeIP;

// Hold the task's next instruction (false: its queue is empty); an instruction that begins a layer
// first decodes the layer's constants into the task's registers.
template <class I>
bool hold_next(TaskRegs<I> &ip, hls::stream<I> &insns, const int32_t *desc, const Memory &mem, const Dram &dram,
               Headers &hd) {
  if (!ip.has) {
    if (insns.empty()) return false;
    ip.i = insns.read();
    ip.has = true;
    if (ip.i.begin) decode_layer(ip.c, desc, mem, dram, &hd);
  }
  return true;
}

inline bool load_step(LoadIP &ip, const int32_t *desc, const Memory &mem, const Dram &dram, Headers &hd,
                      hls::stream<Insn> &insns, TokenQueue full[3][MAX_LEVELS], TokenQueue free[3][MAX_LEVELS],
                      TokenQueue ps[MAX_LEVELS]) {
  if (!hold_next(ip, insns, desc, mem, dram, hd) || !load_ready(ip.c, full, free, ps, ip.i)) return false;
  load_task(ip.c, full, free, ps, ip.i);
  ip.has = false;
  return true;
}

template <bool FLOAT_OK>
inline bool store_step(StoreIP &ip, const int32_t *desc, const Memory &mem, const Dram &dram, Headers &hd,
                       hls::stream<Insn> &insns, TokenQueue free[3][MAX_LEVELS], TokenQueue done[MAX_LEVELS],
                       TokenQueue ps[MAX_LEVELS]) {
  if (!hold_next(ip, insns, desc, mem, dram, hd) || !store_ready(done, ip.i)) return false;
  store_task<FLOAT_OK>(ip.c, free, done, ps, ip.i);
  ip.has = false;
  return true;
}

template <int ROWS, int COLS, int WBITS, int ABITS, bool FLOAT_OK>
bool compute_step(ComputeIP &ip, const int32_t *desc, const Memory &mem, const Dram &dram, Headers &hd,
                  hls::stream<CInsn> &insns, TokenQueue full[3][MAX_LEVELS], TokenQueue free[3][MAX_LEVELS],
                  TokenQueue done[MAX_LEVELS]) {
  if (!hold_next(ip, insns, desc, mem, dram, hd) || !compute_ready(ip.c, full, ip.i)) return false;
  compute_task<ROWS, COLS, WBITS, ABITS, FLOAT_OK>(ip.c, full, free, done, ip.i);
  ip.has = false;
  return true;
}

#ifndef CODAX_HW
// ---- C-simulation: the IPs run by a scheduler ----------------------------------------------------------
// The FIFOs between the IPs, the headers, the descriptor's on-chip copy and the call's DRAM tensors.
// E (the engine's generated scheduling policy) calls the engine's IPs on them.
struct Sim {
  hls::stream<Insn> load[MAX_LEVELS], store[MAX_LEVELS];  // decode -> each port's load / store task
  hls::stream<CInsn> compute;  // decode -> the compute task
  TokenQueues tq;
  Headers hd;
  const int32_t *desc;  // the call's copy in its engine's descriptor memory (E::decode sets it)
  Dram dram;
};

inline Sim &sim() {
  static Sim s;
  return s;
}

template <class T>
inline void drain(hls::stream<T> &q) {
  while (!q.empty()) q.read();
}

// Empty every FIFO: a call starts with none holding anything.
inline void queues_drain(Sim &m) {
  for (int h = 0; h < MAX_LEVELS; ++h) {
    drain(m.load[h]);
    drain(m.store[h]);
    for (int X = 0; X < 3; ++X) {
      drain(m.tq.full[X][h]);
      drain(m.tq.free[X][h]);
    }
    drain(m.tq.done[h]);
    drain(m.tq.ps[h]);
  }
  drain(m.compute);
}

// The scheduler calls the IPs until none can go on. Every token comes from an earlier instruction, so
// this empties the queues.
// - schedule_seed() == 0 (the default): sweeps, each IP in turn as far as it can go (the load IPs, the
//   compute IP, the store IPs), until a sweep runs nothing.
// - schedule_seed() != 0: rounds in which every IP gets one step, in an order drawn pseudo-randomly
//   from the seed, until a round runs nothing. The data and the counts must not depend on the order
//   (the tokens are the only synchronisation); the tests check that they do not. The accounting
//   follows the tokens' times, but a port's shared-width bound counts the beats in the order the
//   transfers run, so the default order is the one the cycle figures use.
inline unsigned &schedule_seed() {
  static unsigned s = 0;
  return s;
}

// IP k: k < E::PORTS the load IP of port k, E::PORTS the compute IP, E::PORTS + 1 + p the store IP of
// port p.
template <class E>
bool step(Sim &m, int k) {
  if (k < E::PORTS) return E::load(k, m);
  if (k == E::PORTS) return E::compute(m);
  return E::store(k - E::PORTS - 1, m);
}

template <class E>
void run_tasks(Sim &m) {
  const int n = 2 * E::PORTS + 1;
  for (bool progress = true; progress;) {
    progress = false;
    if (schedule_seed()) {
      int order[2 * MAX_LEVELS + 1];
      for (int k = 0; k < n; ++k) order[k] = k;
      for (int k = n - 1; k > 0; --k) {  // Fisher-Yates with a linear congruential generator
        schedule_seed() = schedule_seed() * 1103515245u + 12345u;
        const int j = (int)((schedule_seed() >> 16) % (unsigned)(k + 1));
        const int tmp = order[k];
        order[k] = order[j];
        order[j] = tmp;
      }
      for (int k = 0; k < n; ++k) progress = step<E>(m, order[k]) || progress;
      continue;
    }
    for (int k = 0; k < n; ++k)
      while (step<E>(m, k)) progress = true;
  }
}
#endif

// Decode writes an instruction into a task's queue; a full queue blocks it (C-simulation: the scheduler
// runs the IPs until there is room).
template <class E, class T>
void issue(hls::stream<T> &q, const T &i) {
#ifndef CODAX_HW
  if ((int)q.size() >= CODAX_QUEUE_DEPTH) run_tasks<E>(sim());
#endif
  q.write(i);
}

template <class E>
void decode_loads(const Ctx &c, Decode &s, int pos, hls::stream<Insn> load[MAX_LEVELS]) {
  const int32_t *d = c.d;
  for (int k = 0; k < d[D_NTR]; ++k) {
    if (d[D_TR_POS + k] != pos) continue;
    Insn i;
    memset(&i, 0, sizeof(i));
    i.X = d[D_TR_OP + k];
    i.h = d[D_TR_H + k];
    i.par = d[D_TR_PARENT + k];
    for (int dim = 0; dim < NDIMS; ++dim) {
      const bool rel = relevant(i.X, dim);
      i.o[dim] = rel ? s.cur[dim] : 0;
      i.tile[dim] = d[D_TR_TILE + k * NDIMS + dim];
      i.e[dim] = rel ? imin(i.tile[dim], c.bound[dim] - s.cur[dim]) : 1;
    }
    if (i.X == OP_I) {
      i.orow = i.o[DP] * c.sh + i.o[DR] * c.dh;
      i.ocol = i.o[DQ] * c.sw + i.o[DS] * c.dw;
    }
    if (d[D_DB + i.h]) s.pp[i.X][i.h] ^= 1;  // loads fill one copy while the other is read
    i.copy = s.pp[i.X][i.h];
    i.pcopy = s.pp[i.X][i.par];
    i.first = i.X == OP_O && visit_is(c, s, pos, false);
    if (i.par) {
      i.pop_pfull = s.fresh[i.X][i.par];
      s.fresh[i.X][i.par] = false;
      // the parent's tile is read for the last time when the next reload of this level reloads it too
      i.push_pfree = i.X != OP_O && next_advance(s, pos) <= s.pos[i.X][i.par];
    }
    s.fresh[i.X][i.h] = true;
    i.begin = !s.begun_load[i.par];
    s.begun_load[i.par] = true;
    issue<E>(load[i.par], i);
  }
}

// Stores at `pos` before digit `adv` advances (-1: the layer ends): inner levels first.
template <class E>
void decode_stores(const Ctx &c, Decode &s, int pos, int adv, hls::stream<Insn> store[MAX_LEVELS]) {
  const int32_t *d = c.d;
  for (int k = d[D_NTR] - 1; k >= 0; --k) {
    if (d[D_TR_POS + k] != pos || d[D_TR_OP + k] != OP_O) continue;
    Insn i;
    memset(&i, 0, sizeof(i));
    i.X = OP_O;
    i.h = d[D_TR_H + k];
    i.par = d[D_TR_PARENT + k];
    i.copy = s.pp[OP_O][i.h];
    i.pcopy = s.pp[OP_O][i.par];
    i.last = visit_is(c, s, pos, true);
    i.push_pdone = i.par && adv <= s.pos[OP_O][i.par];
    i.begin = !s.begun_store[i.par];
    s.begun_store[i.par] = true;
    issue<E>(store[i.par], i);
  }
}

// The decode task (VTA's fetch): the whole layer's instructions, in program order, into the tasks'
// queues. `c` holds the layer's constants (decode_layer on the descriptor's on-chip copy).
template <class E>
void decode_task(const Ctx &c, hls::stream<Insn> load[MAX_LEVELS], hls::stream<Insn> store[MAX_LEVELS],
                 hls::stream<CInsn> &compute) {
  static Decode s;
  const int32_t *d = c.d;
  memset(&s, 0, sizeof(s));
  s.last = c.first_loop - 1;
  for (int k = 0; k < d[D_NTR]; ++k) s.pos[d[D_TR_OP + k]][d[D_TR_H + k]] = d[D_TR_POS + k];
  decode_loads<E>(c, s, -1, load);
  for (int j = 0; j <= s.last; ++j) {
    const int dim = d[D_LOOP_DIM + j];
    s.idx[j] = 0;
    s.n[j] = trips(d[D_LOOP_FACTOR + j], c.bound[dim] - s.cur[dim], d[D_LOOP_BLK + j]);
    decode_loads<E>(c, s, j, load);
  }
DECODE:
  for (;;) {
    const int j = next_advance(s, s.last);
    CInsn ci;
    memset(&ci, 0, sizeof(ci));
    memcpy(ci.cur, s.cur, sizeof(ci.cur));
    for (int X = 0; X < 3; ++X) {
      const int h = c.inner[X];
      ci.copy[X] = s.pp[X][h];
      ci.acquire[X] = s.fresh[X][h];
      s.fresh[X][h] = false;
      ci.release[X] = j <= s.pos[X][h];  // the tile is reloaded (or stored) before the next run
    }
    ci.o_init = visit_is(c, s, s.last, false);
    ci.begin = !s.begun_compute;
    s.begun_compute = true;
    issue<E>(compute, ci);
    for (int p = s.last; p >= j; --p) decode_stores<E>(c, s, p, j, store);
    if (j < 0) break;
    for (int k = j + 1; k <= s.last; ++k) {  // inner digits wrap to 0
      s.cur[d[D_LOOP_DIM + k]] -= s.idx[k] * d[D_LOOP_BLK + k];
      s.idx[k] = 0;
    }
    s.idx[j] += 1;
    s.cur[d[D_LOOP_DIM + j]] += d[D_LOOP_BLK + j];
    decode_loads<E>(c, s, j, load);
    for (int k = j + 1; k <= s.last; ++k) {
      const int dim = d[D_LOOP_DIM + k];
      s.n[k] = trips(d[D_LOOP_FACTOR + k], c.bound[dim] - s.cur[dim], d[D_LOOP_BLK + k]);
      decode_loads<E>(c, s, k, load);
    }
  }
}

// ---- the descriptor fetch (VTA's fetch module: instructions fetched ahead of the work) ---------------
// The decode IP's descriptor memory holds two copies: call c decodes copy c & 1. A call whose descriptor
// the call before prefetched starts on it at once; any other (a run's first call, an out-of-order call)
// fetches its own first. Every call then prefetches call + 1 of the program (when there is one) into the
// other copy while its layer runs. Between calls only `next`, the index of the prefetched call, survives;
// the program is constant in DRAM, so the copy stays valid across the host's ops between calls.
inline bool desc_prefetched(int next, int call) { return call == next; }
inline bool desc_prefetches(int calls, int call) { return call + 1 < calls; }

// Returns whether the call fetched its own descriptor (it was not prefetched).
inline bool fetch_descriptors(const int32_t *program, int calls, int call, int32_t copies[2][DESC_WORDS],
                              int &next) {
  const int32_t *own = program + (long)call * DESC_WORDS;
  const bool fetched = !desc_prefetched(next, call);
  if (fetched) memcpy(copies[call & 1], own, sizeof(int32_t) * DESC_WORDS);  // one burst
  next = desc_prefetches(calls, call) ? call + 1 : -1;
  if (next >= 0) memcpy(copies[next & 1], own + DESC_WORDS, sizeof(int32_t) * DESC_WORDS);
  return fetched;
}

#ifndef CODAX_HW
// C-simulation's check of the decode IP's premise: a prefetched copy is the program's descriptor (the
// program did not change between the calls).
inline void check_prefetched(const int32_t *copy, const int32_t *program, int call) {
  if (memcmp(copy, program + (long)call * DESC_WORDS, sizeof(int32_t) * DESC_WORDS) != 0) {
    fprintf(stderr, "codax engine: call %d's prefetched descriptor is not the program's: the program changed "
                    "between calls (run a new program from its first call)\n", call);
    abort();
  }
}

// One call in C-simulation: the decode IP takes the call's descriptor (prefetched, or fetched now),
// prefetches the next one and decodes the layer, running the scheduler whenever a queue fills; then the
// IPs run until the queues are empty. `program` holds `calls` descriptors; this call runs `call`.
template <class E>
void run_layer(const int32_t *program, int calls, int call, const Dram &dram) {
  Sim &m = sim();
  queues_drain(m);
  memset(&clock(), 0, sizeof(Clock));
  m.dram = dram;
  const int desc_beats = (DESC_WORDS * 4 + E::BEAT_BYTES - 1) / E::BEAT_BYTES;
  const double fetch = E::AXI_LATENCY + desc_beats;  // one descriptor's round trip through the port
  const bool prefetches = desc_prefetches(calls, call);
  // the prefetch is the first transfer on the DRAM port as the layer starts: the layer's own
  // transfers share the port's width with its beats; it is in at latency + beats
  if (prefetches) clock().port_work[0] += desc_beats;
  const bool fetched = E::decode(m, program, calls, call);
  run_tasks<E>(m);
  bool left = !m.compute.empty();
  for (int p = 0; p < MAX_LEVELS; ++p) left = left || !m.load[p].empty() || !m.store[p].empty();
  if (left || !E::idle()) {
    fprintf(stderr, "codax engine: tasks stalled with instructions left\n");
    abort();
  }
  queues_drain(m);
  // a fetched descriptor comes first, every task's clock starting when it is in (decode needs it);
  // a prefetched one costs what of its prefetch outlasted the call before
  const double exposed = fetched ? fetch : E::prefetch_slack();
  E::prefetch_slack() = prefetches ? maxd(0.0, fetch - clock().end) : 0.0;
#ifdef CODAX_COUNT
  counts().beats += (fetched ? desc_beats : 0) + (prefetches ? desc_beats : 0);
  cycles_total() += exposed + clock().end;
  last_fetch_cycles() = exposed;
#else
  (void)exposed;
#endif
}
#endif

}  // namespace codax

#endif  // CODAX_ENGINE_H
