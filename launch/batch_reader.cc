#include "peng/launch/batch_reader.h"

#include "peng/core/cuda/memory.h"

namespace peng {

BatchReader::BatchReader(const TokenSource& stream, int64_t global_batch, int64_t first_seq,
                         int64_t micro, int64_t seq, int64_t vocab, Device device)
    : stream_(stream),
      batch_(global_batch),
      first_(first_seq),
      micro_(micro),
      seq_(seq),
      vocab_(vocab),
      x_(Tensor::empty({micro, seq}, DType::kI32, device)),
      y_(Tensor::empty({micro, seq}, DType::kI32, device)) {
  if (device.is_cuda()) {
    staging_ = std::make_unique<cuda::PinnedBuffer>(2 * x_.nbytes());
    copied_ = std::make_unique<cuda::Event>(device.index, /*timing=*/false);
  }
}

BatchReader::~BatchReader() = default;

void BatchReader::read(int64_t step, int64_t micro_index) {
  if (!staging_) {
    stream_.read_batch_at(batch_start(step), first_ + micro_index * micro_, micro_, batch_, seq_,
                          x_.data<int32_t>(), y_.data<int32_t>(), vocab_);
    return;
  }
  int32_t* x = static_cast<int32_t*>(staging_->data());
  int32_t* y = x + x_.numel();
  copied_->synchronize();  // the previous micro-batch's copy has read the staging buffer
  stream_.read_batch_at(batch_start(step), first_ + micro_index * micro_, micro_, batch_, seq_, x,
                        y, vocab_);
  const int device = x_.device().index;
  cuda::copy_async(x_.raw_data(), x, x_.nbytes(), cuda::CopyKind::kHostToDevice, device);
  cuda::copy_async(y_.raw_data(), y, y_.nbytes(), cuda::CopyKind::kHostToDevice, device);
  copied_->record();
}

}  // namespace peng
