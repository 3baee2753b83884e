// Which device a rank of `peng train` computes on (training.device, --device), from what
// this build and this node offer. Every refusal is an InputError naming --device and why.
//
//   cpu   the CPU backend
//   cuda  GPU `local rank` of the node (one rank per GPU; with more ranks than GPUs, local
//         rank mod GPUs: ranks share them, and their tensors go over the staged path, not
//         NCCL): refused when this build has no CUDA backend or when no GPU is visible
//   auto  cuda when this build has the CUDA backend and every rank sees a GPU, else cpu
#pragma once

#include <string>

#include "peng/config.pb.h"
#include "peng/core/dtype.h"
#include "peng/launch/environment.h"
#include "peng/parallel/communicator.h"

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

// Collective over `world` (null: one rank): the CPU for every rank when any rank chose it
// (training.device auto on a node without a GPU), else `mine`. Explicit cuda never gets
// here as cpu (a rank without a GPU throws), so explicit choices are kept.
Device agree_on_device(Device mine, Communicator* world);

// "cpu" or "cuda:0 (NVIDIA H200)" for the start-up lines.
std::string describe_device(Device device);

}  // namespace peng
