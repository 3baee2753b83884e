// CPU training-step benchmark: one full optimizer step (forward, backward, global norm,
// clipping, AdamW) of the CPU benchmark models, reporting tokens/s and model FLOP/s
// (telemetry/flops.h convention): GPT-2 (BM_TrainStep) and a Llama-shaped model
// (BM_LlamaTrainStep). Also the sgemm ceiling of the machine: a large OpenBLAS sgemm, the
// number model FLOP/s is judged against.
//
//   build/bin/train_step_bench --benchmark_min_time=10
// bench/cpu_train_step.sh runs this beside the same recipe in PyTorch.
#include <benchmark/benchmark.h>
#include <cblas.h>

#include <random>

#include "peng/core/backend.h"
#include "peng/launch/model_setup.h"
#include "peng/models/gpt2/gpt2.h"
#include "peng/models/registry.h"
#include "peng/optim/adamw.h"
#include "peng/optim/grad_clip.h"
#include "peng/telemetry/flops.h"

namespace peng {
namespace {

// The CPU benchmark models: 4 layers, n_embd 256, 4 heads, T 128, global batch 8, vocab
// 4096; GPT-2, and Llama-shaped with 2 kv heads, a SwiGLU MLP of 704 and an untied head.
constexpr int kLayers = 4, kHeads = 4, kEmbd = 256, kSeq = 128, kBatch = 8, kVocab = 4096;

DecoderConfig gpt2_model() {
  Gpt2Config c;
  c.n_layer = kLayers;
  c.n_head = kHeads;
  c.n_embd = kEmbd;
  c.vocab_size = kVocab;
  c.max_seq_len = kSeq;
  return to_decoder(c);
}

DecoderConfig llama_model() {
  DecoderConfig c = model_family("llama").custom();
  c.n_layer = kLayers;
  c.n_head = kHeads;
  c.n_kv_head = 2;
  c.n_embd = kEmbd;
  c.ffn_hidden = 704;
  c.vocab_size = kVocab;
  c.max_seq_len = kSeq;
  model_family("llama").complete(c);
  return c;
}

void train_steps(benchmark::State& state, const DecoderConfig& arch) {
  std::unique_ptr<CausalLM> model = build_model(arch, cpu_backend());
  model->init_random(0);
  AdamW opt(model->parameters(), cpu_backend(), {.weight_decay = 0.1f});
  std::mt19937 gen(1);
  Tensor x = Tensor::empty({kBatch, kSeq}, DType::kI32),
         y = Tensor::empty({kBatch, kSeq}, DType::kI32);
  for (int i = 0; i < kBatch * kSeq; ++i) {
    x.data<int32_t>()[i] = int32_t(gen() % kVocab);
    y.data<int32_t>()[i] = int32_t(gen() % kVocab);
  }
  const float scale = 1.0f / float(kBatch * kSeq);
  for (auto _ : state) {
    model->parameters().zero_grads();
    benchmark::DoNotOptimize(model->forward(x, y));
    model->backward(scale);
    const double norm = global_grad_norm(model->parameters(), cpu_backend());
    clip_grad_norm(model->parameters(), cpu_backend(), norm, 1.0f);
    opt.step(1e-4f);
  }
  const double tokens = double(kBatch) * kSeq;
  const double flops = model_flops_per_token(flops_shape(arch, kSeq));
  state.counters["tokens_per_s"] =
      benchmark::Counter(tokens * double(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["model_flops"] =
      benchmark::Counter(tokens * flops * double(state.iterations()), benchmark::Counter::kIsRate);
}

void BM_TrainStep(benchmark::State& state) { train_steps(state, gpt2_model()); }
BENCHMARK(BM_TrainStep)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_LlamaTrainStep(benchmark::State& state) { train_steps(state, llama_model()); }
BENCHMARK(BM_LlamaTrainStep)->Unit(benchmark::kMillisecond)->UseRealTime();

// The machine's sgemm ceiling: C = A B with square n x n f32 matrices, all OpenBLAS threads.
void BM_SgemmCeiling(benchmark::State& state) {
  const int n = int(state.range(0));
  Tensor a = Tensor::empty({n, n}), b = Tensor::empty({n, n}), out = Tensor::empty({n, n});
  std::mt19937 gen(2);
  std::uniform_real_distribution<float> u(-1, 1);
  for (int64_t i = 0; i < a.numel(); ++i) {
    a.data<float>()[i] = u(gen);
    b.data<float>()[i] = u(gen);
  }
  for (auto _ : state) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a.data<float>(), n,
                b.data<float>(), n, 0.0f, out.data<float>(), n);
    benchmark::ClobberMemory();
  }
  state.counters["flops"] = benchmark::Counter(2.0 * n * n * double(n) * double(state.iterations()),
                                               benchmark::Counter::kIsRate);
}
BENCHMARK(BM_SgemmCeiling)->Arg(2048)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace peng

BENCHMARK_MAIN();
