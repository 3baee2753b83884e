// CudaBackend's embedding ops (whole table and vocabulary shard) against the CPU backend
// (label gpu; skips without a GPU). The kernels add in the CPU backend's order, so fp32
// results are compared for bit equality.
#include <algorithm>
#include <cstring>
#include <random>

#include "tests/gpu/gpu_op_check.h"

namespace peng {
namespace {

using namespace gpu_test;

struct Case {
  int64_t b, t, vp, tmax, c;
};
// GPT-2 124M's sizes (tokens 8 x 1024 into wte 50304 x 768), a tiny case, and odd ones with
// many repeated tokens.
const Case kCases[] = {
    {1, 1, 1, 1, 1}, {3, 100, 200, 101, 33}, {5, 61, 3, 61, 300}, {8, 1024, 50304, 1024, 768}};

TEST(CudaEmbeddingOps, ForwardBackwardMatchCpuBitForBit) {
  PENG_REQUIRE_GPU();
  uint64_t seed = 1;
  for (const Case& t : kCases) {
    Tensor tok = random_tokens(t.b, t.t, seed++, 0, int32_t(std::min<int64_t>(t.vp, 50257)));
    Tensor wte = random({t.vp, t.c}, seed++), wpe = random({t.tmax, t.c}, seed++);
    Tensor out = on_gpu(poisoned({t.b, t.t, t.c}));
    gpu().embedding_forward(on_gpu(tok), on_gpu(wte), on_gpu(wpe), out);
    Tensor ref = Tensor::empty({t.b, t.t, t.c});
    cpu_backend().embedding_forward(tok, wte, wpe, ref);
    EXPECT_EQ(relative_error(on_cpu(out), ref), 0.0) << t.b << "x" << t.t << " C " << t.c;

    // Accumulated into: the same nonzero start on both sides.
    Tensor dout = random({t.b, t.t, t.c}, seed++);
    Tensor dwte = random({t.vp, t.c}, seed++), dwpe = random({t.tmax, t.c}, seed++);
    Tensor dwte_gpu = on_gpu(dwte), dwpe_gpu = on_gpu(dwpe);
    gpu().embedding_backward(on_gpu(dout), on_gpu(tok), dwte_gpu, dwpe_gpu);
    cpu_backend().embedding_backward(dout, tok, dwte, dwpe);
    EXPECT_EQ(relative_error(on_cpu(dwte_gpu), dwte), 0.0) << t.b << "x" << t.t << " C " << t.c;
    EXPECT_EQ(relative_error(on_cpu(dwpe_gpu), dwpe), 0.0) << t.b << "x" << t.t << " C " << t.c;
  }
}

// Two shards of GPT-2's table, wpe on the first only; tokens of both shards (and padding
// rows never hit).
TEST(CudaEmbeddingOps, ShardsMatchCpu) {
  PENG_REQUIRE_GPU();
  const int64_t B = 4, T = 512, vp = 50304, C = 768, half = vp / 2;
  Tensor tok = random_tokens(B, T, 3, 0, 50257);
  Tensor wte = random({vp, C}, 4), wpe = random({T, C}, 5), dout = random({B, T, C}, 6);
  Tensor none;
  for (int64_t begin : {int64_t(0), half}) {
    const bool first = begin == 0;
    Tensor shard = wte.slice(begin, begin + half).clone();
    Tensor out = on_gpu(poisoned({B, T, C}));
    Tensor wpe_gpu = first ? on_gpu(wpe) : Tensor();
    gpu().embedding_forward_shard(on_gpu(tok), on_gpu(shard), begin, wpe_gpu, out);
    Tensor ref = Tensor::empty({B, T, C});
    cpu_backend().embedding_forward_shard(tok, shard, begin, first ? wpe : none, ref);
    EXPECT_EQ(relative_error(on_cpu(out), ref), 0.0) << "shard at " << begin;

    Tensor dshard = random({half, C}, uint64_t(7 + begin)), dwpe = random({T, C}, 8);
    Tensor dshard_gpu = on_gpu(dshard), dwpe_gpu = first ? on_gpu(dwpe) : Tensor();
    gpu().embedding_backward_shard(on_gpu(dout), on_gpu(tok), begin, dshard_gpu, dwpe_gpu);
    Tensor dwpe_ref = dwpe.clone();
    cpu_backend().embedding_backward_shard(dout, tok, begin, dshard, first ? dwpe_ref : none);
    EXPECT_EQ(relative_error(on_cpu(dshard_gpu), dshard), 0.0) << "shard at " << begin;
    if (first) {
      EXPECT_EQ(relative_error(on_cpu(dwpe_gpu), dwpe_ref), 0.0);
    }
  }
}

TEST(CudaEmbeddingOps, BackwardIsDeterministic) {
  PENG_REQUIRE_GPU();
  const int64_t B = 8, T = 1024, vp = 50304, C = 768;
  Tensor tok = on_gpu(random_tokens(B, T, 9, 0, 1000));  // many repeats
  Tensor dout = on_gpu(random({B, T, C}, 10));
  Tensor first;
  for (int run = 0; run < 2; ++run) {
    Tensor dwte = Tensor::zeros({vp, C}, DType::kF32, Device::cuda(0));
    Tensor dwpe = Tensor::zeros({T, C}, DType::kF32, Device::cuda(0));
    gpu().embedding_backward(dout, tok, dwte, dwpe);
    Tensor got = on_cpu(dwte);
    if (run == 0) {
      first = got;
    } else {
      EXPECT_EQ(std::memcmp(got.raw_data(), first.raw_data(), got.nbytes()), 0);
    }
  }
}

// Ids outside the table read and write nothing outside it: a zero row (plus wpe) forward,
// nothing backward (the CPU backend rejects them; on the GPU the data loader's host check
// keeps them out, core/cuda/ops/embedding.cu).
TEST(CudaEmbeddingOps, IdsOutsideTheTableAreSkipped) {
  PENG_REQUIRE_GPU();
  const int64_t vl = 6, C = 5, guard = 3;
  Tensor tok = Tensor::from_vector<int32_t>({2, -1, 6, 1 << 30}, {1, 4});
  Tensor wte = random({vl, C}, 11), wpe = random({4, C}, 12), dout = random({1, 4, C}, 13);
  Tensor out = on_gpu(poisoned({1, 4, C}));
  gpu().embedding_forward(on_gpu(tok), on_gpu(wte), on_gpu(wpe), out);
  Tensor got = on_cpu(out);
  for (int64_t c = 0; c < C; ++c) {
    EXPECT_EQ(got.data<float>()[c], wte.data<float>()[2 * C + c] + wpe.data<float>()[c]);
    for (int64_t t = 1; t < 4; ++t) {
      EXPECT_EQ(got.data<float>()[t * C + c], wpe.data<float>()[t * C + c]);
    }
  }
  Tensor padded = Tensor::zeros({guard + vl + guard, C}, DType::kF32, Device::cuda(0));
  Tensor table = padded.slice(guard, guard + vl);
  Tensor dwpe = Tensor::zeros({4, C}, DType::kF32, Device::cuda(0));
  gpu().embedding_backward(on_gpu(dout), on_gpu(tok), table, dwpe);
  Tensor all = on_cpu(padded);
  for (int64_t r = 0; r < guard + vl + guard; ++r) {
    for (int64_t c = 0; c < C; ++c) {
      const float want = r == guard + 2 ? dout.data<float>()[c] : 0.0f;
      EXPECT_EQ(all.data<float>()[r * C + c], want) << "row " << r - guard;
    }
  }
}

TEST(CudaEmbeddingOps, WrongDeviceIsAClearError) {
  PENG_REQUIRE_GPU();
  Tensor tok = Tensor::zeros({1, 2}, DType::kI32), wte = Tensor::zeros({3, 4});
  Tensor wpe = Tensor::zeros({2, 4}), out = Tensor::empty({1, 2, 4});
  EXPECT_THROW(gpu().embedding_forward(tok, wte, wpe, out), Error);
}

}  // namespace
}  // namespace peng
