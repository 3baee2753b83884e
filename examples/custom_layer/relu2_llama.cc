#include "relu2_llama.h"

#include <cmath>
#include <memory>

#include <peng/core/backend.h>
#include <peng/core/custom_op.h>
#include <peng/core/error.h>
#include <peng/models/llama/llama.h>
#include <peng/models/nn/feed_forward.h>
#include <peng/models/nn/linear.h>
#include <peng/models/registry.h>

namespace relu2 {
namespace {

using namespace peng;

// ---- the op: y = relu(x)^2; dx = dy * 2 relu(x) (CPU, f32) ----

void relu2_forward(Backend&, OpArgs in, OpOutputs out) {
  PENG_INPUT_CHECK(in[0]->dtype() == DType::kF32, "relu2: f32 only");
  const float* x = in[0]->data<float>();
  float* y = out[0]->data<float>();
  for (int64_t i = 0; i < in[0]->numel(); ++i) y[i] = x[i] > 0 ? x[i] * x[i] : 0.0f;
}

// in: dy, x; out: dx
void relu2_backward(Backend&, OpArgs in, OpOutputs out) {
  const float* dy = in[0]->data<float>();
  const float* x = in[1]->data<float>();
  float* dx = out[0]->data<float>();
  for (int64_t i = 0; i < in[0]->numel(); ++i) dx[i] = x[i] > 0 ? 2.0f * x[i] * dy[i] : 0.0f;
}

// ---- the layer ----

class Relu2Mlp final : public FeedForward {
 public:
  Relu2Mlp(ParameterSet& params, const std::string& prefix, const DecoderConfig& c,
           const TpGroup& tp)
      : up_(params, prefix + ".up_proj", c.n_embd, c.ffn_hidden, tp,
            {.bias = false,
             .split = LinearSplit::kColumn,
             .layout = c.weight_layout,
             .init = {ParamInit::kNormal, c.init_std}}),
        down_(params, prefix + ".down_proj", c.ffn_hidden, c.n_embd, tp,
              {.bias = false,
               .split = LinearSplit::kRow,
               .layout = c.weight_layout,
               .init = {ParamInit::kNormal, c.init_std / std::sqrt(2.0 * c.n_layer)}}) {
    PENG_INPUT_CHECK(c.ffn_hidden % tp.size() == 0, "relu2_mlp: ffn_hidden (", c.ffn_hidden,
                     ") must divide by tp (", tp.size(), ")");
  }

  // x (N, C) -> (N, C); pre_ = act_'s input (N, F / tp) kept for backward.
  const Tensor& forward(Backend& be, const Tensor& x, bool rows_sharded) override {
    pre_ = up_.forward(be, x, rows_sharded);
    act_ = Tensor::empty(pre_.shape(), pre_.dtype(), pre_.device());
    call_op(be, "relu2", {&pre_}, {&act_});
    return down_.forward(be, act_, rows_sharded);
  }

  const Tensor& backward(Backend& be, const Tensor& dout) override {
    const Tensor& dact = down_.backward(be, dout);
    dpre_ = Tensor::empty(pre_.shape(), pre_.dtype(), pre_.device());
    call_op(be, "relu2_backward", {&dact, &pre_}, {&dpre_});
    return up_.backward(be, dpre_);
  }

  void activation_slots(std::vector<Tensor*>& out) override {
    up_.activation_slots(out);
    down_.activation_slots(out);
    out.insert(out.end(), {&pre_, &act_});
  }
  void drop_input() override { up_.drop_input(); }
  void restore_input(const Tensor& x) override { up_.restore_input(x); }

 private:
  Linear up_, down_;
  Tensor pre_, act_, dpre_;
};

// ---- the family: llama's, with the MLP swapped ----

const ModelFamily& llama() { return model_family("llama"); }

// A llama config made ours: the name, the layer, the MLP's parameter names.
DecoderConfig ours(DecoderConfig c) {
  c.family = "llama_relu2";
  c.ffn_layer = "relu2_mlp";
  c.names.mlp_in = "up_proj";
  return c;
}

DecoderConfig as_llama(DecoderConfig c) {
  c.family = "llama";
  c.ffn_layer.clear();
  return c;
}

DecoderConfig from_hf_config(const JsonFields& f) {
  if (auto act = f.string("hidden_act"); act && *act != "relu2") {
    f.fail("hidden_act", "is \"" + *act + "\"; llama_relu2's MLP is \"relu2\"");
  }
  Json j = f.json();  // llama's parser, on a copy that says llama
  j["model_type"] = "llama";
  j["hidden_act"] = "silu";
  return ours(llama().from_hf_config(JsonFields(j, f.file())));
}

Json to_hf_config(const DecoderConfig& c, DType dtype) {
  Json j = llama().to_hf_config(as_llama(c), dtype);
  j["model_type"] = "llama_relu2";
  j["hidden_act"] = "relu2";
  return j;
}

// Llama's Hugging Face names; up_proj and down_proj map one to one.
HfWeights hf_weights(const DecoderConfig& c) {
  HfWeights w = llama().hf_weights(as_llama(c));
  w.tensors.clear();
  for (const Parameter& p : parameter_table(c)) {
    if (p.name.ends_with(".mlp.up_proj.weight")) {
      w.tensors.push_back({p.name, {{"model." + p.name, p.logical_shape}}});
    } else {
      w.tensors.push_back(llama::hf_tensor(c, p));
    }
  }
  w.model = "a llama_relu2 model with num_hidden_layers=" + std::to_string(c.n_layer);
  return w;
}

}  // namespace

void register_all() {
  register_op("relu2", DeviceType::kCpu, relu2_forward);
  register_op("relu2_backward", DeviceType::kCpu, relu2_backward);
  register_feed_forward("relu2_mlp", [](ParameterSet& params, const std::string& prefix,
                                        const DecoderConfig& c, const TpGroup& tp) {
    return std::make_unique<Relu2Mlp>(params, prefix, c, tp);
  });
  static const ModelFamily family = {
      .name = "llama_relu2",
      .description = "Llama with a ReLU² MLP (examples/custom_layer)",
      .hf_model_types = {"llama_relu2"},
      .presets = {},
      .preset = nullptr,
      .custom = [] { return ours(model_family("llama").custom()); },
      .complete = [](DecoderConfig& c) { model_family("llama").complete(c); },
      .from_hf_config = from_hf_config,
      .to_hf_config = to_hf_config,
      .hf_weights = hf_weights,
      .build = model_family("llama").build};
  register_model_family(family);
}

}  // namespace relu2
