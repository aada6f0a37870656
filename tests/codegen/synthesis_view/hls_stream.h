// hls::stream as synthesis sees it, for tests/codegen/test_synthesis_view.py: a FIFO of fixed depth
// with no allocation (the C-simulation model that ships with the ap_types headers grows a std::deque).
#ifndef X_HLS_STREAM_SIM_H
#define X_HLS_STREAM_SIM_H

namespace hls {
template <class T>
class stream {
  T v[2];
  int head, n;

 public:
  stream() : head(0), n(0) {}
  bool empty() const { return n == 0; }
  bool full() const { return n == 2; }
  T read() {
    const T x = v[head];
    head = (head + 1) % 2;
    --n;
    return x;
  }
  void write(const T &x) {
    v[(head + n) % 2] = x;
    ++n;
  }
};
}  // namespace hls

#endif
