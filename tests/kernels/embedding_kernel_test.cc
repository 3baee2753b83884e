// kernels/embedding.cuh under the CUDA emulation against CpuBackend's embedding ops (whole
// table and vocabulary shard). The kernels add in the CPU backend's order, so fp32 results
// are compared for bit equality.
#include "tests/cuda_emu/emu.h"  // first: the kernels compile against it

#include "peng/core/cuda/kernels/embedding.cuh"
#include "tests/kernels/bf16_check.h"

namespace peng {
namespace {

using namespace kernel_test;
namespace k = cuda::kernels;

struct Case {
  int64_t b, t, vp, tmax;
  int c;
};
// A single token; channels below, above and not a multiple of a warp or of the block; more
// tokens than the block stages at once (300 > 256); more rows than row buckets (200 > 64);
// a vocabulary smaller than the bucket count; few distinct tokens (many collisions).
const Case kCases[] = {
    {1, 1, 1, 1, 1},      {2, 3, 5, 4, 7},    {3, 100, 200, 101, 33},
    {4, 75, 70, 80, 300}, {5, 61, 3, 61, 64},
};

TEST(EmbeddingKernel, ForwardMatchesCpu) {
  uint64_t seed = 1;
  for (const Case& t : kCases) {
    Tensor tok = random_tokens(t.b, t.t, seed++, 0, int32_t(t.vp));
    Tensor wte = random({t.vp, t.c}, seed++), wpe = random({t.tmax, t.c}, seed++);
    Tensor out = poisoned({t.b, t.t, t.c});
    emu::Launch launch;
    k::embedding_forward(launch, tok.data<const int32_t>(), wte.data<const float>(), 0, t.vp,
                         wpe.data<const float>(), t.b, t.t, t.c, out.data<float>());
    Tensor ref = Tensor::empty({t.b, t.t, t.c});
    cpu_backend().embedding_forward(tok, wte, wpe, ref);
    EXPECT_EQ(relative_error(out, ref), 0.0) << t.b << "x" << t.t << " C " << t.c;
  }
}

TEST(EmbeddingKernel, BackwardMatchesCpuBitForBitAndAccumulates) {
  uint64_t seed = 100;
  for (const Case& t : kCases) {
    Tensor tok = random_tokens(t.b, t.t, seed++, 0, int32_t(t.vp));
    Tensor dout = random({t.b, t.t, t.c}, seed++);
    // dwte, dwpe are accumulated into: the same nonzero start on both sides.
    Tensor dwte = random({t.vp, t.c}, seed++), dwpe = random({t.tmax, t.c}, seed++);
    Tensor dwte_ref = dwte.clone(), dwpe_ref = dwpe.clone();
    emu::Launch launch;
    k::embedding_backward(launch, dout.data<const float>(), tok.data<const int32_t>(), t.b, t.t,
                          t.c, 0, t.vp, dwte.data<float>(), dwpe.data<float>());
    cpu_backend().embedding_backward(dout, tok, dwte_ref, dwpe_ref);
    EXPECT_EQ(relative_error(dwte, dwte_ref), 0.0) << t.b << "x" << t.t << " C " << t.c;
    EXPECT_EQ(relative_error(dwpe, dwpe_ref), 0.0) << t.b << "x" << t.t << " C " << t.c;
  }
}

// Shards [0, 40), [40, 80), [80, 100) of a 100-row table (the last with 17 valid rows and
// padding); tokens of every shard, wpe on one shard only. Each shard matches the CPU's shard
// op, and the shards sum to the whole-table result.
TEST(EmbeddingKernel, ShardsMatchCpuAndSumToTheWholeTable) {
  const int64_t B = 3, T = 41, vp = 100, tmax = 50;
  const int C = 37;
  Tensor tok = random_tokens(B, T, 7, 0, 97);
  Tensor wte = random({vp, C}, 8), wpe = random({tmax, C}, 9), dout = random({B, T, C}, 10);
  Tensor sum = Tensor::zeros({B, T, C});
  Tensor dwte_whole = Tensor::zeros({vp, C}), dwpe_start = random({tmax, C}, 11);
  for (auto [begin, end] : {std::pair<int64_t, int64_t>{0, 40}, {40, 80}, {80, 100}}) {
    const bool first = begin == 0;
    Tensor shard = wte.slice(begin, end).clone();
    Tensor no_wpe;
    Tensor out = poisoned({B, T, C});
    emu::Launch launch;
    k::embedding_forward(launch, tok.data<const int32_t>(), shard.data<const float>(), begin,
                         end - begin, first ? wpe.data<const float>() : nullptr, B, T, C,
                         out.data<float>());
    Tensor ref = Tensor::empty({B, T, C});
    cpu_backend().embedding_forward_shard(tok, shard, begin, first ? wpe : no_wpe, ref);
    EXPECT_EQ(relative_error(out, ref), 0.0) << "shard at " << begin;
    cpu_backend().add(sum, out, sum);

    Tensor dshard = random({end - begin, C}, uint64_t(20 + begin));
    Tensor dshard_ref = dshard.clone(), dwpe_ref = dwpe_start.clone();
    Tensor dwpe = dwpe_start.clone();
    k::embedding_backward(launch, dout.data<const float>(), tok.data<const int32_t>(), B, T, C,
                          begin, end - begin, dshard.data<float>(),
                          first ? dwpe.data<float>() : nullptr);
    cpu_backend().embedding_backward_shard(dout, tok, begin, dshard_ref, first ? dwpe_ref : no_wpe);
    EXPECT_EQ(relative_error(dshard, dshard_ref), 0.0) << "shard at " << begin;
    EXPECT_EQ(relative_error(dwpe, first ? dwpe_ref : dwpe_start), 0.0) << "shard at " << begin;
    Tensor zero_shard = Tensor::zeros({end - begin, C});
    k::embedding_backward(launch, dout.data<const float>(), tok.data<const int32_t>(), B, T, C,
                          begin, end - begin, zero_shard.data<float>(), nullptr);
    dwte_whole.slice(begin, end).copy_from(zero_shard);
  }
  Tensor whole = Tensor::empty({B, T, C});
  cpu_backend().embedding_forward(tok, wte, wpe, whole);
  // wte row + wpe row + zeros: the same two-term sum, exactly.
  EXPECT_EQ(relative_error(sum, whole), 0.0);
  Tensor dwte_ref = Tensor::zeros({vp, C}), dwpe_ref = Tensor::zeros({tmax, C});
  cpu_backend().embedding_backward(dout, tok, dwte_ref, dwpe_ref);
  EXPECT_EQ(relative_error(dwte_whole, dwte_ref), 0.0);
}

// Ids outside the table (negative, = Vl, huge) are "not in the shard": zero rows forward (plus
// wpe), nothing backward, and no write outside the table (guard rows on both sides).
TEST(EmbeddingKernel, IdsOutsideTheTableTouchNothingOutside) {
  const int64_t B = 2, T = 5, vl = 6, guard = 4;
  const int C = 9;
  Tensor tok =
      Tensor::from_vector<int32_t>({3, -1, 6, 0, 2147483647, -2147483647 - 1, 5, 7, 1, 3}, {B, T});
  Tensor wte = random({vl, C}, 1), wpe = random({T, C}, 2), dout = random({B, T, C}, 3);
  Tensor out = poisoned({B, T, C});
  emu::Launch launch;
  k::embedding_forward(launch, tok.data<const int32_t>(), wte.data<const float>(), 0, vl,
                       wpe.data<const float>(), B, T, C, out.data<float>());
  for (int64_t bt = 0; bt < B * T; ++bt) {
    const int32_t id = tok.data<int32_t>()[bt];
    for (int c = 0; c < C; ++c) {
      const float p = wpe.data<float>()[(bt % T) * C + c];
      const float want = id >= 0 && id < vl ? wte.data<float>()[id * C + c] + p : p;
      EXPECT_EQ(out.data<float>()[bt * C + c], want) << "token " << id;
    }
  }
  // The table with guard rows before and after it, all zero; only in-table rows change.
  Tensor padded = Tensor::zeros({guard + vl + guard, C});
  k::embedding_backward(launch, dout.data<const float>(), tok.data<const int32_t>(), B, T, C, 0, vl,
                        padded.data<float>() + guard * C, nullptr);
  for (int64_t r = 0; r < guard + vl + guard; ++r) {
    const int64_t row = r - guard;
    for (int c = 0; c < C; ++c) {
      float want = 0.0f;
      for (int64_t bt = 0; bt < B * T; ++bt) {
        if (tok.data<int32_t>()[bt] == row && row >= 0 && row < vl) {
          want += dout.data<float>()[bt * C + c];
        }
      }
      EXPECT_EQ(padded.data<float>()[r * C + c], want) << "row " << row;
    }
  }
}

TEST(EmbeddingKernel, BackwardIsDeterministic) {
  const int64_t B = 4, T = 70, vp = 9;
  const int C = 40;
  Tensor tok = random_tokens(B, T, 5, 0, int32_t(vp)), dout = random({B, T, C}, 6);
  std::vector<float> first;
  for (int run = 0; run < 2; ++run) {
    Tensor dwte = Tensor::zeros({vp, C});
    emu::Launch launch;
    k::embedding_backward(launch, dout.data<const float>(), tok.data<const int32_t>(), B, T, C, 0,
                          vp, dwte.data<float>(), nullptr);
    std::vector<float> got(dwte.data<float>(), dwte.data<float>() + dwte.numel());
    if (run == 0)
      first = got;
    else
      EXPECT_EQ(got, first);
  }
}

TEST(EmbeddingKernel, Bf16WithinBf16Rounding) {
  const int64_t B = 3, T = 29, vp = 50;
  const int C = 65;
  Tensor tok = random_tokens(B, T, 1, 0, int32_t(vp));
  Tensor wte = random({vp, C}, 2), wpe = random({T, C}, 3), dout = random({B, T, C}, 4);
  std::vector<__nv_bfloat16> wte_b = to_bf16(wte), wpe_b = to_bf16(wpe), dout_b = to_bf16(dout);
  std::vector<__nv_bfloat16> out_b(size_t(B * T * C), __float2bfloat16(NAN));
  emu::Launch launch;
  k::embedding_forward(launch, tok.data<const int32_t>(), wte_b.data(), 0, vp, wpe_b.data(), B, T,
                       C, out_b.data());
  Tensor out = from_bf16(out_b, {B, T, C});
  Tensor ref = Tensor::empty({B, T, C});
  cpu_backend().embedding_forward(tok, wte, wpe, ref);
  EXPECT_LE(relative_error(out, ref), 1e-2);

  Tensor dwte = Tensor::zeros({vp, C}), dwpe = Tensor::zeros({T, C});
  k::embedding_backward(launch, dout_b.data(), tok.data<const int32_t>(), B, T, C, 0, vp,
                        dwte.data<float>(), dwpe.data<float>());
  Tensor dwte_ref = Tensor::zeros({vp, C}), dwpe_ref = Tensor::zeros({T, C});
  cpu_backend().embedding_backward(dout, tok, dwte_ref, dwpe_ref);
  EXPECT_LE(relative_error(dwte, dwte_ref), 1e-2);
  EXPECT_LE(relative_error(dwpe, dwpe_ref), 1e-2);
}

}  // namespace
}  // namespace peng
