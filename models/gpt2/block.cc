#include "models/gpt2/block.h"

#include <string>

#include "models/nn/buffer.h"

namespace peng {

namespace {
std::string prefix(int index, const char* name) {
  return "h." + std::to_string(index) + "." + name;
}
}  // namespace

Block::Block(ParameterSet& params, int index, int64_t n_embd, int n_head, float eps,
             const TpGroup& tp)
    : ln_1_(params, prefix(index, "ln_1"), n_embd, eps),
      attn_(params, prefix(index, "attn"), n_embd, n_head, tp),
      ln_2_(params, prefix(index, "ln_2"), n_embd, eps),
      mlp_(params, prefix(index, "mlp"), n_embd, tp),
      n_embd_(n_embd) {}

const Tensor& Block::forward(Backend& be, const Tensor& x, int64_t batch, int64_t seq,
                             bool rows_sharded) {
  const int64_t rows = x.dim(0);
  const Tensor& h1 = ln_1_.forward(be, x);
  const Tensor& a = attn_.forward(be, h1, batch, seq, rows_sharded);
  ensure_buffer(x2_, {rows, n_embd_}, x.device());
  be.add(x, a, x2_);
  const Tensor& h2 = ln_2_.forward(be, x2_);
  const Tensor& m = mlp_.forward(be, h2, rows_sharded);
  ensure_buffer(x3_, {rows, n_embd_}, x.device());
  be.add(x2_, m, x3_);
  return x3_;
}

void Block::backward(Backend& be, Tensor& dres) {
  Tensor d = dres.view({-1, n_embd_});
  ln_2_.backward(be, mlp_.backward(be, d), d);   // d: dL/dx3 -> dL/dx2
  ln_1_.backward(be, attn_.backward(be, d), d);  // d: dL/dx2 -> dL/dx
}

}  // namespace peng
