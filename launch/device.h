// Which device a rank of `peng train` computes on (training.device, --device), from what
// this build and this node offer. Every refusal is an InputError naming --device and why.
//
//   cpu   the CPU backend
//   cuda  GPU `local rank` of the node (one rank per GPU): refused when this build has no
//         CUDA backend, when no GPU is visible, or when the node has fewer GPUs than ranks
//   auto  cuda when this build has the CUDA backend and a GPU is visible, else cpu
//
// Training on GPUs with more than one rank is refused for now: the multi-GPU path (NCCL
// communicators for the dp/tp/pp groups) comes with its own issue.
#pragma once

#include <string>

#include "core/dtype.h"
#include "launch/environment.h"
#include "peng/config.pb.h"

namespace peng {

// What the choice depends on, apart from the config and the launcher.
struct DeviceFacts {
  bool compiled_with_cuda = false;
  int device_count = 0;  // visible CUDA devices on this node
};
// This build's and this node's facts (cuda::compiled_with_cuda, cuda::device_count).
DeviceFacts detect_device_facts();

// The device for `setting` (cpu, cuda, auto; validated before) on the rank `env` describes.
Device choose_device(const std::string& setting, const LaunchEnv& env, const DeviceFacts& facts);
// choose_device for training.device with this build's and node's facts.
Device resolve_device(const proto::TrainConfig& config, const LaunchEnv& env);

// "cpu" or "cuda:0 (NVIDIA H200)" for the start-up lines.
std::string describe_device(Device device);

}  // namespace peng
