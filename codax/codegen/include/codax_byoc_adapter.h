// codax_byoc_adapter.h -- the BYOC layer ABI -> the engine's (program, calls, call, weights, x, y, r, psum).
#pragma once
#include <stdint.h>
#include <string.h>
#include <vector>

namespace codax_byoc {
// (program, calls, call, weights, x, y, r, psum, wt): a BYOC call is a program of one call, its descriptor
typedef void (*EngineEntry)(const int32_t *, int, int, const uint8_t *, const uint8_t *, uint8_t *,
                            const uint8_t *, uint8_t *, const uint8_t *);

// Integers -> bit-packed at `bits` (element i at bit i * bits, least significant first); floats as bytes.
template <typename T>
std::vector<uint8_t> pack(const T *src, long n, int bits) {
  std::vector<uint8_t> out((n * bits + 7) / 8 + 8, 0);
  if (bits == 8 * (int)sizeof(T)) {
    memcpy(out.data(), src, n * sizeof(T));
    return out;
  }
  for (long i = 0; i < n; ++i) {
    const unsigned long long v = (unsigned long long)(long long)src[i];
    for (int k = 0; k < bits; ++k)
      if ((v >> k) & 1) out[(i * bits + k) >> 3] |= (uint8_t)(1u << ((i * bits + k) & 7));
  }
  return out;
}

template <typename T>
void unpack(const uint8_t *src, long n, int bits, bool sgn, T *dst) {
  if (bits == 8 * (int)sizeof(T)) {
    memcpy(dst, src, n * sizeof(T));
    return;
  }
  for (long i = 0; i < n; ++i) {
    unsigned long long v = 0;
    for (int k = 0; k < bits; ++k) v |= (unsigned long long)((src[(i * bits + k) >> 3] >> ((i * bits + k) & 7)) & 1) << k;
    long long s = (sgn && ((v >> (bits - 1)) & 1)) ? (long long)v - (1LL << bits) : (long long)v;
    dst[i] = (T)s;
  }
}

// `wt` (nw elements packed at wbits): a run-time weight tensor, or null for the weights blob's own.
template <typename X, typename R, typename Y, typename W>
int call(EngineEntry engine, const int32_t *desc, const uint8_t *weights, const X *x, long nx, int xbits,
         const R *r, int rbits, Y *y, long ny, int ybits, bool ysgn, long psum_bytes, const W *wt, long nw,
         int wbits) {
  std::vector<uint8_t> xb = pack(x, nx, xbits);
  std::vector<uint8_t> rb = r ? pack(r, ny, rbits) : std::vector<uint8_t>();
  std::vector<uint8_t> wb = wt ? pack(wt, nw, wbits) : std::vector<uint8_t>();
  std::vector<uint8_t> yb((ny * ybits + 7) / 8 + 8, 0), ps(psum_bytes + 8, 0);
  engine(desc, 1, 0, weights, xb.data(), yb.data(), r ? rb.data() : 0, ps.data(), wt ? wb.data() : 0);
  unpack(yb.data(), ny, ybits, ysgn, y);
  return 0;
}
}  // namespace codax_byoc
