// The GPT-2 model family's registration record (models/registry.h).
#pragma once

#include "peng/models/registry.h"

namespace peng {

const ModelFamily& gpt2_family();

}  // namespace peng
