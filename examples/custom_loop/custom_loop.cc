// custom_loop: a training program with its own loop (llm.c style) over peng's parts: a model
// from the registry, the CPU backend, AdamW, global-norm clipping and, under mpirun, a
// data-parallel gradient reducer that overlaps its all-reduces with backward.
//
//   custom_loop TOKENS.bin STEPS [OUT.jsonl]        (mpirun -np N custom_loop ...)
//
// Step s reads the global batch of B sequences of T tokens by peng's batch rule; rank r
// takes sequences [r B / N, (r+1) B / N). Writes one JSON line per step (loss, grad_norm),
// the same numbers `peng train` reports for the same model and recipe.
#include <cstdio>
#include <exception>
#include <memory>
#include <optional>
#include <string>

#include <peng/core/backend.h>
#include <peng/core/data/token_shard.h>
#include <peng/core/tensor.h>
#include <peng/models/registry.h>
#include <peng/optim/adamw.h>
#include <peng/optim/grad_clip.h>
#include <peng/parallel/data_parallel/grad_reducer.h>
#include <peng/parallel/mpi/mpi_communicator.h>

using namespace peng;

namespace {

constexpr int64_t B = 8, T = 16;  // global batch, sequence length
constexpr float kLr = 1e-3f, kClip = 1.0f;

// A small Llama: the family's structure and defaults, our sizes.
DecoderConfig small_llama() {
  const ModelFamily& llama = model_family("llama");
  DecoderConfig c = llama.custom();
  c.n_layer = 2, c.n_head = 4, c.n_kv_head = 2, c.n_embd = 64, c.ffn_hidden = 160;
  c.vocab_size = 256, c.max_seq_len = T;
  llama.complete(c);
  return c;
}

// The mean of `v` over every rank.
double mean_over(Communicator& world, double v) {
  Tensor t = Tensor::from_vector(std::vector<double>{v}, {1});
  world.all_reduce(t, ReduceOp::kSum)->wait();
  return t.data<double>()[0] / world.size();
}

void train(const std::string& tokens, int steps, FILE* out) {
  Communicator& world = mpi_world();
  PENG_INPUT_CHECK(B % world.size() == 0, "the global batch (", B, ") must divide by the ",
                   world.size(), " ranks");
  const int64_t local = B / world.size(), first = world.rank() * local;

  Backend& be = backend_for(Device::cpu());
  const DecoderConfig c = small_llama();
  std::unique_ptr<CausalLM> model = build_model(c, be);  // the whole model on every rank
  model->init_random(8);                                 // the same weights on every rank
  ParameterSet& params = model->parameters();
  AdamW adamw(params, be, {.beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f});
  std::optional<GradReducer> reducer;  // buckets all-reduced while backward runs
  if (world.size() > 1) reducer.emplace(params, world, be, GradReducer::Options{});

  const TokenStream data(tokens);
  Tensor x = Tensor::empty({local, T}, DType::kI32), y = Tensor::empty({local, T}, DType::kI32);
  for (int step = 0; step < steps; ++step) {
    data.read_batch(step, first, local, B, T, x.data<int32_t>(), y.data<int32_t>(), c.vocab_size);
    params.zero_grads();
    if (reducer) reducer->arm();
    const double loss = mean_over(world, model->forward(x, y));
    model->backward(1.0f / float(B * T));  // the gradient of the global batch's mean loss
    if (reducer) reducer->wait();          // every rank: the sum over ranks
    const double norm = global_grad_norm(params, be);
    clip_grad_norm(params, be, norm, kClip);
    adamw.step(kLr);
    if (world.rank() == 0) {
      std::fprintf(out, "{\"step\": %d, \"loss\": %.17g, \"grad_norm\": %.17g}\n", step, loss,
                   norm);
      std::fflush(out);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  try {
    PENG_INPUT_CHECK(argc == 3 || argc == 4, "usage: custom_loop TOKENS.bin STEPS [OUT.jsonl]");
    FILE* out = argc == 4 && mpi_world().rank() == 0 ? std::fopen(argv[3], "w") : stdout;
    PENG_INPUT_CHECK(out != nullptr, "cannot write ", argv[3]);
    train(argv[1], std::stoi(argv[2]), out);
    if (out != stdout) std::fclose(out);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    abort_job(1);
    return 1;
  }
}
