#include "tests/util/collective_checks.h"

#include <gtest/gtest.h>

#include "peng/core/error.h"

namespace peng::testing {

const std::vector<DType> kAllDTypes = {DType::kF32, DType::kF64,  DType::kI32,
                                       DType::kU16, DType::kBF16, DType::kF16};

Tensor filled(DType dt, int64_t n, const std::function<double(int64_t)>& f, Device device) {
  Tensor t = Tensor::empty({n}, DType::kF64);
  for (int64_t i = 0; i < n; ++i) t.data<double>()[i] = f(i);
  return t.to_dtype(dt).to(device);
}

void expect_values(const Tensor& t, const std::function<double(int64_t)>& f,
                   const std::string& what, double tol) {
  Tensor d = t.to(Device::cpu()).to_dtype(DType::kF64);
  for (int64_t i = 0; i < d.numel(); ++i) {
    ASSERT_NEAR(d.data<double>()[i], f(i), tol)
        << what << " " << dtype_name(t.dtype()) << " [" << i << "] " << t.str();
  }
}

void check_all_reduce(Communicator& c, const std::vector<DType>& dtypes, Device device) {
  const int r = c.rank(), n = c.size();
  for (DType dt : dtypes) {
    Tensor s = filled(
        dt, 37, [&](int64_t i) { return r + double(i % 5); }, device);
    c.all_reduce(s, ReduceOp::kSum)->wait();
    expect_values(
        s, [&](int64_t i) { return n * (n - 1) / 2.0 + n * double(i % 5); }, "sum");
    Tensor m = filled(
        dt, 37, [&](int64_t i) { return double((r * 7 + i) % n); }, device);
    c.all_reduce(m, ReduceOp::kMax)->wait();
    expect_values(
        m, [&](int64_t) { return double(n - 1); }, "max");
    Tensor a = filled(
        dt, 37, [&](int64_t i) { return 2.0 * r + double(i % 3); }, device);
    c.all_reduce(a, ReduceOp::kAvg)->wait();
    expect_values(
        a, [&](int64_t i) { return double(n - 1) + double(i % 3); }, "avg");
  }
}

void check_reduce_scatter_and_all_gather(Communicator& c, const std::vector<DType>& dtypes,
                                         Device device) {
  const int r = c.rank(), n = c.size();
  const int64_t chunk = 5;
  for (DType dt : dtypes) {
    Tensor in = filled(
        dt, chunk * n, [&](int64_t i) { return double(r + i); }, device);
    Tensor out = Tensor::empty({chunk}, dt, device);
    c.reduce_scatter(in, out, ReduceOp::kSum)->wait();
    expect_values(
        out, [&](int64_t i) { return n * double(r * chunk + i) + n * (n - 1) / 2.0; },
        "reduce_scatter");
    Tensor mine = filled(
        dt, chunk, [&](int64_t i) { return double(10 * r + i); }, device);
    Tensor all = Tensor::empty({chunk * n}, dt, device);
    c.all_gather(mine, all)->wait();
    expect_values(
        all, [&](int64_t i) { return double(10 * (i / chunk) + i % chunk); }, "all_gather");
  }
  Tensor bad = Tensor::empty({chunk * n + 1}, DType::kF32, device);
  Tensor out = Tensor::empty({chunk}, DType::kF32, device);
  EXPECT_THROW(c.reduce_scatter(bad, out, ReduceOp::kSum), Error);
}

void check_broadcast_and_ring(Communicator& c, const std::vector<DType>& dtypes, Device device) {
  const int r = c.rank(), n = c.size();
  for (DType dt : dtypes) {
    const int root = n - 1;
    Tensor t = filled(
        dt, 9, [&](int64_t i) { return r == root ? double(i + 3) : 0.0; }, device);
    c.broadcast(t, root)->wait();
    expect_values(
        t, [&](int64_t i) { return double(i + 3); }, "broadcast");
    // Each rank sends to the next and receives from the previous, both in flight at once.
    Tensor out = filled(
        dt, 4, [&](int64_t i) { return double(r * 4 + i); }, device);
    Tensor in = Tensor::empty({4}, dt, device);
    auto rx = c.recv(in, (r + n - 1) % n, 7);
    auto tx = c.send(out, (r + 1) % n, 7);
    tx->wait();
    rx->wait();
    expect_values(
        in, [&](int64_t i) { return double(((r + n - 1) % n) * 4 + i); }, "ring");
  }
  Tensor one = Tensor::empty({1}, DType::kF32, device);
  EXPECT_THROW(c.broadcast(one, n), Error);  // root outside the group
}

void check_all_to_all_v(Communicator& c, const std::vector<DType>& dtypes, Device device) {
  const int r = c.rank(), n = c.size();
  std::vector<int64_t> send(static_cast<size_t>(n)), recv(static_cast<size_t>(n));
  int64_t send_total = 0, recv_total = 0;
  for (int j = 0; j < n; ++j) {
    send[size_t(j)] = r + j;  // to j
    recv[size_t(j)] = j + r;  // from j: what j sends to r
    send_total += r + j;
    recv_total += j + r;
  }
  // Element k of the block for j (or from j) and its offset in the tensor.
  const auto value = [](int from, int to, int64_t k) { return double(1000 * from + 100 * to + k); };
  for (DType dt : dtypes) {
    // The values need 12 bits: bf16 and f16 cannot hold them (the move is bytes anyway).
    if (dt == DType::kBF16 || dt == DType::kF16) continue;
    Tensor in = filled(
        dt, send_total,
        [&](int64_t i) {
          int j = 0;
          while (i >= send[size_t(j)]) i -= send[size_t(j++)];
          return value(r, j, i);
        },
        device);
    Tensor out = Tensor::empty({recv_total}, dt, device);
    c.all_to_all_v(in, send, out, recv)->wait();
    expect_values(
        out,
        [&](int64_t i) {
          int j = 0;
          while (i >= recv[size_t(j)]) i -= recv[size_t(j++)];
          return value(j, r, i);
        },
        "all_to_all_v");
  }
  Tensor small = Tensor::empty({1}, DType::kF32, device);
  const std::vector<int64_t> bad(static_cast<size_t>(n), 2);
  EXPECT_THROW(c.all_to_all_v(small, bad, small, bad), Error);  // 2n elements in a tensor of 1
}

}  // namespace peng::testing
