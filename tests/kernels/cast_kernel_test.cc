// kernels/cast.cuh under the CUDA emulation against core/dtype.h's f32_to_bf16 and
// bf16_to_f32, bit for bit: random bit patterns (every exponent, NaNs with payloads, infinities,
// subnormals), the rounding ties, and all 65536 bf16 values.
#include "tests/cuda_emu/emu.h"  // first: the kernels compile against it

#include <cmath>
#include <cstring>
#include <random>

#include "peng/core/cuda/kernels/cast.cuh"
#include "peng/core/dtype.h"
#include "tests/kernels/kernel_check.h"

namespace peng {
namespace {

namespace k = cuda::kernels;

uint16_t bits_of(__nv_bfloat16 x) { return __bfloat16_as_ushort(x); }
uint32_t bits_of(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
}
float float_of(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// f32 inputs whose bf16 rounding is delicate, then `n_random` random bit patterns.
std::vector<float> f32_inputs(size_t n_random) {
  const uint32_t special[] = {
      0x00000000u, 0x80000000u,  // +-0
      0x7f800000u, 0xff800000u,  // +-inf
      0x7fc00000u, 0xffc00000u,  // quiet NaNs
      0x7f800001u, 0xff800001u,  // signalling NaNs, payload only in the low bits
      0x7fbfffffu, 0x7fff0000u, 0xffffffffu,
      0x7f7fffffu, 0xff7fffffu,  // largest finite: rounds to +-inf
      0x7f7f7fffu, 0x7f7f8000u,  // just below / at the tie under the largest bf16
      0x3f808000u, 0x3f818000u,  // ties: to even (down, up)
      0x3f808001u, 0x3f807fffu,  // just above / below a tie
      0x00000001u, 0x80000001u, 0x00008000u,
      0x00018000u, 0x007fffffu,  // subnormals
      0x3f800000u, 0xbf800000u, 0x40490fdbu,
  };
  std::vector<float> v;
  for (uint32_t u : special) v.push_back(float_of(u));
  std::mt19937_64 rng(12345);
  for (size_t i = 0; i < n_random; ++i) v.push_back(float_of(uint32_t(rng())));
  return v;
}

TEST(CastKernel, F32ToBf16MatchesDtypeBitForBit) {
  const std::vector<float> x = f32_inputs(20000);
  const int64_t n = int64_t(x.size());
  for (int max_blocks : {k::kPointwiseMaxBlocks, 5}) {
    // Two poisons: an element the kernel does not write cannot match under both.
    for (uint16_t poison : {uint16_t(0x0000), uint16_t(0xffff)}) {
      std::vector<__nv_bfloat16> y(x.size(), __ushort_as_bfloat16(poison));
      emu::Launch launch;
      k::cast_f32_to_bf16(launch, x.data(), n, y.data(), max_blocks);
      int mismatches = 0;
      for (size_t i = 0; i < x.size(); ++i) {
        const uint16_t want = f32_to_bf16(x[i]);
        if (bits_of(y[i]) != want && ++mismatches <= 5) {
          ADD_FAILURE() << std::hex << "f32 0x" << bits_of(x[i]) << " -> bf16 0x" << bits_of(y[i])
                        << ", want 0x" << want;
        }
      }
      EXPECT_EQ(mismatches, 0) << "grid of " << max_blocks << " blocks";
    }
  }
}

TEST(CastKernel, NanStaysNanAndOverflowIsInfinity) {
  const std::vector<float> x = {float_of(0x7f800001u), float_of(0xff800001u), float_of(0x7f7fffffu),
                                float_of(0xff7fffffu)};
  std::vector<__nv_bfloat16> y(x.size());
  emu::Launch launch;
  k::cast_f32_to_bf16(launch, x.data(), int64_t(x.size()), y.data());
  EXPECT_TRUE(std::isnan(__bfloat162float(y[0])));
  EXPECT_TRUE(std::isnan(__bfloat162float(y[1])));
  EXPECT_EQ(bits_of(y[1]) & 0x8000u, 0x8000u);  // the sign is kept
  EXPECT_EQ(__bfloat162float(y[2]), INFINITY);
  EXPECT_EQ(__bfloat162float(y[3]), -INFINITY);
}

TEST(CastKernel, Bf16ToF32IsExactForEveryValue) {
  std::vector<__nv_bfloat16> x(65536);
  for (uint32_t u = 0; u < 65536; ++u) x[u] = __ushort_as_bfloat16(uint16_t(u));
  for (int max_blocks : {k::kPointwiseMaxBlocks, 7}) {
    for (uint32_t poison : {0x00000000u, 0xffffffffu}) {
      std::vector<float> y(x.size(), float_of(poison));
      emu::Launch launch;
      k::cast_bf16_to_f32(launch, x.data(), int64_t(x.size()), y.data(), max_blocks);
      int mismatches = 0;
      for (uint32_t u = 0; u < 65536; ++u) {
        const uint32_t want = bits_of(bf16_to_f32(uint16_t(u)));
        if (bits_of(y[u]) != want && ++mismatches <= 5) {
          ADD_FAILURE() << std::hex << "bf16 0x" << u << " -> f32 0x" << bits_of(y[u])
                        << ", want 0x" << want;
        }
      }
      EXPECT_EQ(mismatches, 0) << "grid of " << max_blocks << " blocks";
    }
  }
}

TEST(CastKernel, RoundTripKeepsBf16Values) {
  // bf16 -> f32 -> bf16 is the identity on every bf16 bit pattern but NaNs, which come back
  // with the quiet bit set (sign and payload kept).
  std::vector<__nv_bfloat16> x(65536), back(65536);
  for (uint32_t u = 0; u < 65536; ++u) x[u] = __ushort_as_bfloat16(uint16_t(u));
  std::vector<float> mid(65536);
  emu::Launch launch;
  k::cast_bf16_to_f32(launch, x.data(), 65536, mid.data());
  k::cast_f32_to_bf16(launch, mid.data(), 65536, back.data());
  for (uint32_t u = 0; u < 65536; ++u) {
    const bool nan = (u & 0x7f80u) == 0x7f80u && (u & 0x7fu);
    if (nan) {
      ASSERT_EQ(bits_of(back[u]), u | 0x40u) << std::hex << u;
    } else {
      ASSERT_EQ(bits_of(back[u]), u) << std::hex << u;
    }
  }
}

}  // namespace
}  // namespace peng
