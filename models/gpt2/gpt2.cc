#include "peng/models/gpt2/gpt2.h"

#include "peng/models/registry.h"

namespace peng {

int64_t gpt2_num_params(const Gpt2Config& config, bool include_position_embedding) {
  const DecoderConfig c = to_decoder(config);
  const int64_t positions = int64_t(config.max_seq_len) * config.n_embd;
  return count_parameters(c) - (include_position_embedding ? 0 : positions);
}

}  // namespace peng
