#include "launch/batch_reader.h"

namespace peng {

BatchReader::BatchReader(const TokenStream& stream, int64_t global_batch, int64_t first_seq,
                         int64_t micro, int64_t seq, int64_t vocab)
    : stream_(stream),
      batch_(global_batch),
      first_(first_seq),
      micro_(micro),
      seq_(seq),
      vocab_(vocab),
      x_(Tensor::empty({micro, seq}, DType::kI32)),
      y_(Tensor::empty({micro, seq}, DType::kI32)) {}

void BatchReader::read(int64_t step, int64_t micro_index) {
  stream_.read_batch_at(batch_start(step), first_ + micro_index * micro_, micro_, batch_, seq_,
                        x_.data<int32_t>(), y_.data<int32_t>(), vocab_);
}

}  // namespace peng
