// Closed-form checks of a Communicator's collectives (nccl-tests style), shared by the
// multi-rank tests of every communicator: each rank fills tensors from its rank, the
// expected result is a formula in rank and group size. Small integers are exact in every
// dtype, so results compare exactly.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "peng/parallel/communicator.h"

namespace peng::testing {

extern const std::vector<DType> kAllDTypes;  // f32 f64 i32 u16 bf16 f16

// A (n) tensor of `dt` on `device` with element i = f(i).
Tensor filled(DType dt, int64_t n, const std::function<double(int64_t)>& f,
              Device device = Device::cpu());
// ASSERTs (a host copy of) t equals f element by element, within `tol`.
void expect_values(const Tensor& t, const std::function<double(int64_t)>& f,
                   const std::string& what, double tol = 0);

// all_reduce sum, max and avg for each dtype.
void check_all_reduce(Communicator& c, const std::vector<DType>& dtypes,
                      Device device = Device::cpu());
// reduce_scatter sum and all_gather for each dtype; a mis-sized input throws.
void check_reduce_scatter_and_all_gather(Communicator& c, const std::vector<DType>& dtypes,
                                         Device device = Device::cpu());
// broadcast from the last rank, and a ring of send/recv in flight together, for each dtype;
// a root outside the group throws.
void check_broadcast_and_ring(Communicator& c, const std::vector<DType>& dtypes,
                              Device device = Device::cpu());

// all_to_all_v for each dtype but bf16 and f16: rank r sends r + j elements (none when r + j is 0)
// to rank j, valued 1000 r + 100 j + i; a count list that does not add up to the tensor throws.
void check_all_to_all_v(Communicator& c, const std::vector<DType>& dtypes,
                        Device device = Device::cpu());

}  // namespace peng::testing
