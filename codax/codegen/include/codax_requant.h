// codax_requant.h -- the requantizer every store shares (codax_engine.h's epilogue and the GEMM core's
// store IP, codax/codegen/core_store.py): requantization defined in float32 by codax/codegen/golden.py,
// computed in integers only, bit for bit.
#ifndef CODAX_REQUANT_H
#define CODAX_REQUANT_H

#include <stdint.h>

#include "ap_int.h"

namespace codax {

typedef long long i64;

// ---- the requantizer, in integer arithmetic ---------------------------------------------------------
// Requantization is defined in float32 (codax/codegen/golden.py: ONNX Runtime rounds through float32,
// and every output must match it bit for bit), but the datapath stays integer: each float32 step below
// is the IEEE-754 operation (round to nearest, ties to even) carried out exactly on integers, so the
// store IP builds two 24 x 24-bit multipliers, a 28-bit adder, priority encoders and shifters, and no
// floating-point core.
// The multipliers stay float32 bit patterns in the descriptor and the weights blob.
// A float32 value is held as (-1)^neg * sig * 2^q with sig < 2^24 and q >= -149 (the subnormals'
// quantum); every finite float32 is one such pair, and when q > -149 sig is normalized (>= 2^23).
// Inf and NaN are classes of their own, so every bit pattern a descriptor may hold gets the float
// definition's result.
enum F32Class { F32_FINITE = 0, F32_INF = 1, F32_NAN = 2 };
const int F32_MIN_Q = -149;  // quantum of the subnormals: 2^-126 / 2^23
const int F32_MAX_Q = 104;  // quantum of the largest binade: (2^24 - 1) * 2^104 is FLT_MAX

struct Fp32 {
  bool neg;
  int cls;  // F32Class
  uint32_t sig;
  int q;
};

// Index of the highest set bit of v > 0: a six-level priority encoder (no data-dependent loop).
inline int msb64(uint64_t v) {
  int n = 0;  // the highest set bit is in [n, n + 2 * step): halve the interval six times
  if (v >> (n + 32)) n += 32;
  if (v >> (n + 16)) n += 16;
  if (v >> (n + 8)) n += 8;
  if (v >> (n + 4)) n += 4;
  if (v >> (n + 2)) n += 2;
  if (v >> (n + 1)) n += 1;
  return n;
}

// v / 2^sh rounded to nearest, ties to even: IEEE's default rounding, and rint's. Callers keep
// v < 2^62, so shifting by 63 (the cap) leaves less than half a unit, as any larger shift would.
inline uint64_t shr_rne(uint64_t v, int sh) {
  if (sh <= 0) return v;
  if (sh > 63) sh = 63;
  const uint64_t kept = v >> sh, rest = v & ((1ULL << sh) - 1), half = 1ULL << (sh - 1);
  return kept + ((rest > half || (rest == half && (kept & 1))) ? 1 : 0);
}

// The float32 nearest to (-1)^neg * mag * 2^e (mag < 2^62): 24 significant bits, or the subnormals'
// fixed quantum below 2^-126 (gradual underflow), and infinity past FLT_MAX. A caller that dropped
// low bits ORs them into mag's lowest bit (a sticky bit), at least two bits below the rounding one.
inline Fp32 fp_round(bool neg, uint64_t mag, int e) {
  Fp32 r = {neg, F32_FINITE, 0, F32_MIN_Q};
  if (mag == 0) return r;
  int q = msb64(mag) + e - 23;
  if (q < F32_MIN_Q) q = F32_MIN_Q;
  uint64_t s = q >= e ? shr_rne(mag, q - e) : mag << (e - q);
  if (s >> 24) {  // rounding carried into a 25th bit: 2^24 * 2^q is 2^23 * 2^(q + 1), exactly
    s >>= 1;
    ++q;
  }
  r.sig = (uint32_t)s;
  r.q = q;
  if (q > F32_MAX_Q) r.cls = F32_INF;  // round to nearest overflows to infinity
  return r;
}

// A float32 bit pattern as sign, class and (sig, q): the hidden bit restored for normal numbers.
inline Fp32 fp_decode(uint32_t bits) {
  const int ex = (int)((bits >> 23) & 0xFF);
  const uint32_t man = bits & 0x7FFFFF;
  const int cls = ex == 255 ? (man ? F32_NAN : F32_INF) : F32_FINITE;
  const Fp32 r = {(bits >> 31) != 0, cls, ex ? (man | 0x800000u) : man, ex ? ex - 150 : F32_MIN_Q};
  return r;
}

// float32(v): an integer rounded to 24 significant bits.
inline Fp32 fp_from_int(i64 v) { return fp_round(v < 0, v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v, 0); }

// The integer value of float32(v) (|v| < 2^40): float32 integers above 2^24 are multiples of 2^(q >= 1).
inline i64 f32_int(i64 v) {
  const Fp32 f = fp_from_int(v);
  const i64 mag = f.q >= 0 ? (i64)f.sig << f.q : (i64)(f.sig >> -f.q);  // q < 0 only below 2^24: exact
  return f.neg ? -mag : mag;
}

// a * b in float32: the exact 48-bit product of the significands, rounded once.
inline Fp32 fp_mul(const Fp32 &a, const Fp32 &b) {
  const bool neg = a.neg != b.neg;
  const bool zero = (a.cls == F32_FINITE && a.sig == 0) || (b.cls == F32_FINITE && b.sig == 0);
  if (a.cls == F32_NAN || b.cls == F32_NAN || ((a.cls == F32_INF || b.cls == F32_INF) && zero)) {
    const Fp32 nan = {neg, F32_NAN, 0, 0};
    return nan;
  }
  if (a.cls == F32_INF || b.cls == F32_INF) {
    const Fp32 inf = {neg, F32_INF, 0, 0};
    return inf;
  }
  const ap_uint<24> sa = a.sig, sb = b.sig;
  const ap_uint<48> p = sa * sb;
  return fp_round(neg, p.to_uint64(), a.q + b.q);
}

// a + b in float32, as an adder with three guard bits: the operand of coarser quantum is widened by 3
// bits, the other aligned to it with the bits shifted out ORed into its lowest bit (the sticky bit).
// That rounds exactly: bits drop only when the quanta differ by 4 or more, and then |a| > 8 |b| keeps
// the sum's quantum at least half of a's, so every rounding boundary (a float32 or a midpoint) is an
// even multiple of the guard unit, while the jammed sum is odd and lies between the same boundaries
// as the exact one (below it when adding, above it when subtracting: a is a multiple of 8 units).
inline Fp32 fp_add(const Fp32 &x, const Fp32 &y) {
  if (x.cls == F32_NAN || y.cls == F32_NAN || (x.cls == F32_INF && y.cls == F32_INF && x.neg != y.neg)) {
    const Fp32 nan = {false, F32_NAN, 0, 0};
    return nan;
  }
  if (x.cls == F32_INF) return x;
  if (y.cls == F32_INF) return y;
  if (y.sig == 0) return x;
  if (x.sig == 0) return y;
  const bool swap = y.q > x.q;
  const Fp32 &a = swap ? y : x, &b = swap ? x : y;
  const int d = a.q - b.q > 31 ? 31 : a.q - b.q;  // b.sig << 3 < 2^27: a shift of 31 clears it
  const uint32_t aw = a.sig << 3, bw = b.sig << 3;
  const uint32_t bt = (bw >> d) | ((bw & ((1u << d) - 1)) != 0 ? 1u : 0u);
  if (a.neg == b.neg) return fp_round(a.neg, aw + bt, a.q - 3);
  return aw >= bt ? fp_round(a.neg, aw - bt, a.q - 3) : fp_round(b.neg, bt - aw, a.q - 3);
}

// rint(v) (ties to even) clamped to +-2^30, as golden.py's np.clip(np.rint(v), -2^30, 2^30). NaN, which
// the clamp passes, is the caller's: the float definition converts it to INT64_MIN (x86, NumPy).
inline i64 fp_rint_clamped(const Fp32 &v) {
  const uint64_t lim = 1ULL << 30;
  uint64_t mag;
  if (v.cls == F32_INF || v.q >= 7) mag = lim;  // q >= 7: normalized, so |v| >= 2^23 * 2^7
  else if (v.q >= 0) mag = (uint64_t)v.sig << v.q;  // below 2^30: exact
  else mag = shr_rne(v.sig, -v.q);  // rounds to at most 2^30
  return v.neg ? -(i64)mag : (i64)mag;
}

// A float32 bound of the descriptor (D_CLAMP) as an integer, truncated toward zero as a C cast does;
// infinities and NaN saturate at +-2^62, beyond any output.
inline i64 f32_bits_to_int(uint32_t bits) {
  const Fp32 f = fp_decode(bits);
  uint64_t mag;
  if (f.cls != F32_FINITE || f.q >= 39) mag = 1ULL << 62;  // q >= 39: |f| >= 2^23 * 2^39
  else if (f.q >= 0) mag = (uint64_t)f.sig << f.q;
  else mag = f.sig >> (-f.q > 31 ? 31 : -f.q);  // sig < 2^24: 31 bits shift it all out
  return f.neg ? -(i64)mag : (i64)mag;
}

// Integer epilogue (float32 requantization, defined by codax/codegen/golden.py), on the float32 bit
// patterns of the multipliers M[ch] (`m`) and MR (`mr`):
//   v = float32(acc + bias) * M[ch]  (+ (float32(res) - float32(zr)) * MR when a residual is fused)
//   q = clamp(rint(v) + zy, lo, hi)    rint = round half to even, clamped to +-2^30 first
inline i64 requant(int32_t acc, uint32_t m, bool has_res, i64 res, int zr, uint32_t mr, int zy, i64 lo,
                   i64 hi) {
  Fp32 v = fp_mul(fp_from_int(acc), fp_decode(m));
  if (has_res) {  // float32(res) - float32(zr) is an integer: float32 integers subtract exactly
    v = fp_add(v, fp_mul(fp_from_int(f32_int(res) - f32_int(zr)), fp_decode(mr)));
  }
  // NaN (inf - inf, from multipliers past 2^96) converts to INT64_MIN, and the zero point wraps it
  const i64 q = v.cls == F32_NAN ? (i64)((1ULL << 63) + (uint64_t)(i64)zy) : fp_rint_clamped(v) + zy;
  return q < lo ? lo : (q > hi ? hi : q);
}

}  // namespace codax

#endif  // CODAX_REQUANT_H
