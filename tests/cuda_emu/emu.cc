// The CUDA execution-model emulation (emu.h): blocks run one after another; a block's
// threads are fibers scheduled round-robin by this file's scheduler, each running until it
// finishes or waits at a barrier. A fiber switch saves the callee-saved registers and the
// floating-point control words on the fiber's stack and swaps stack pointers (x86-64 System V;
// ucontext's swapcontext costs a system call per switch, which made the tests ten times
// slower).
#include "tests/cuda_emu/emu.h"

#include <algorithm>
#include <iterator>
#include <stdexcept>
#include <string>

#if !defined(__x86_64__)
#error "the CUDA emulation's fiber switch is written for x86-64"
#endif

// void peng_emu_switch(void** save_sp, void* load_sp): saves this context on the current
// stack, stores the stack pointer in *save_sp, and resumes the context saved at load_sp.
asm(R"(
  .text
  .globl peng_emu_switch
  .type peng_emu_switch, @function
peng_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size peng_emu_switch, .-peng_emu_switch
)");
extern "C" void peng_emu_switch(void** save_sp, void* load_sp);

namespace peng::emu {
namespace {

constexpr size_t kStackBytes = 128 * 1024;
constexpr int kWarpSize = 32;

// Threads wait at a barrier until `live` of them have arrived; a thread that finishes leaves
// every barrier it belongs to (CUDA: exited threads no longer count at __syncthreads).
struct Barrier {
  int live = 0;
  int arrived = 0;
  unsigned generation = 0;
};

// Exchanges alternate between two slot sets, so one barrier per exchange suffices: a lane
// writes set s again only after the next exchange's barrier, which every lane reaches only
// after reading set s.
struct Warp {
  Barrier barrier;
  unsigned char slots[2][kWarpSize][16];
  int exchanges[kWarpSize];  // per lane: how many exchanges it has done
};

struct Fiber {
  void* sp = nullptr;  // saved stack pointer while switched out
  ThreadCoords coords;
  int linear = 0;
  bool done = false;
};

struct BlockRun {
  std::vector<Fiber> fibers;
  std::vector<Warp> warps;
  Barrier block;
  void* scheduler_sp = nullptr;
  int current = -1;
  const std::function<void()>* body = nullptr;
  uint64_t progress = 0;  // bumped when a barrier opens or a thread finishes
};

BlockRun* g_run = nullptr;
std::vector<std::unique_ptr<char[]>> g_stacks;  // one per thread slot, reused by every block

BlockRun& running() {
  if (!g_run || g_run->current < 0) throw std::logic_error("CUDA emulation: no kernel running");
  return *g_run;
}

void yield() {
  BlockRun& r = running();
  peng_emu_switch(&r.fibers[r.current].sp, r.scheduler_sp);
}

void release(Barrier& b) {
  b.arrived = 0;
  ++b.generation;
  ++g_run->progress;
}

void arrive(Barrier& b) {
  const unsigned generation = b.generation;
  if (++b.arrived == b.live) return release(b);
  while (b.generation == generation) yield();
}

void leave(Barrier& b) {
  --b.live;
  if (b.arrived > 0 && b.arrived == b.live) release(b);
}

[[noreturn]] void fiber_main() {
  (*g_run->body)();
  Fiber& f = g_run->fibers[g_run->current];
  f.done = true;
  leave(g_run->block);
  leave(g_run->warps[f.linear / kWarpSize].barrier);
  ++g_run->progress;
  peng_emu_switch(&f.sp, g_run->scheduler_sp);  // never resumed
  __builtin_unreachable();
}

// A fresh fiber's stack, laid out as peng_emu_switch leaves a switched-out context: the
// control words (this thread's), six zero registers, then fiber_main as the return address.
void* initial_stack(char* stack) {
  uintptr_t top = (reinterpret_cast<uintptr_t>(stack) + kStackBytes) & ~uintptr_t(15);
  auto* p = reinterpret_cast<uint64_t*>(top);
  *--p = 0;  // fiber_main's frame then sees rsp % 16 == 8 at entry, as after a call
  *--p = reinterpret_cast<uint64_t>(&fiber_main);
  for (int i = 0; i < 6; ++i) *--p = 0;
  uint32_t mxcsr;
  uint16_t fpucw;
  asm volatile("stmxcsr %0" : "=m"(mxcsr));
  asm volatile("fnstcw %0" : "=m"(fpucw));
  *--p = uint64_t(mxcsr) | uint64_t(fpucw) << 32;
  return p;
}

void run_block(BlockRun& r) {
  int remaining = int(r.fibers.size());
  while (remaining > 0) {
    const uint64_t before = r.progress;
    for (size_t i = 0; i < r.fibers.size(); ++i) {
      if (r.fibers[i].done) continue;
      r.current = int(i);
      peng_emu_switch(&r.scheduler_sp, r.fibers[i].sp);
      if (r.fibers[i].done) --remaining;
    }
    r.current = -1;
    if (remaining > 0 && r.progress == before) {
      throw std::logic_error(
          "CUDA emulation: deadlock, threads of a block wait at barriers the others never reach "
          "(__syncthreads or a warp operation in divergent code?)");
    }
  }
}

}  // namespace

const ThreadCoords& coords() {
  BlockRun& r = running();
  return r.fibers[r.current].coords;
}

int lane_id() {
  BlockRun& r = running();
  return r.fibers[r.current].linear % kWarpSize;
}

void sync_block() { arrive(running().block); }

void sync_warp() {
  BlockRun& r = running();
  arrive(r.warps[r.fibers[r.current].linear / kWarpSize].barrier);
}

void warp_exchange(const void* value, size_t nbytes, int src, void* out) {
  BlockRun& r = running();
  const int linear = r.fibers[r.current].linear;
  Warp& w = r.warps[linear / kWarpSize];
  const int lane = linear % kWarpSize;
  auto& slots = w.slots[w.exchanges[lane]++ & 1];
  std::memcpy(slots[lane], value, nbytes);
  arrive(w.barrier);
  std::memcpy(out, slots[src >= 0 && src < kWarpSize ? src : lane], nbytes);
}

void run_grid(dim3 grid, dim3 block, const std::function<void()>& body) {
  const int threads = int(block.x * block.y * block.z);
  if (threads <= 0 || threads > 1024 || threads % kWarpSize != 0) {
    throw std::logic_error(
        "CUDA emulation: a block must have a multiple of 32 threads, at most "
        "1024; got " +
        std::to_string(threads));
  }
  if (g_run) throw std::logic_error("CUDA emulation: a kernel launched from inside a kernel");
  while (int(g_stacks.size()) < threads) g_stacks.emplace_back(new char[kStackBytes]);
  BlockRun r;
  r.body = &body;
  r.fibers.resize(size_t(threads));
  r.warps.resize(size_t(threads / kWarpSize));
  g_run = &r;
  struct Reset {
    ~Reset() { g_run = nullptr; }
  } reset;
  for (unsigned bz = 0; bz < grid.z; ++bz) {
    for (unsigned by = 0; by < grid.y; ++by) {
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        r.block = Barrier{.live = threads};
        for (Warp& w : r.warps) {
          w.barrier = Barrier{.live = kWarpSize};
          std::fill(std::begin(w.exchanges), std::end(w.exchanges), 0);
        }
        for (int t = 0; t < threads; ++t) {
          Fiber& f = r.fibers[size_t(t)];
          f.linear = t;
          f.done = false;
          f.coords = {.thread_idx = {unsigned(t) % block.x, unsigned(t) / block.x % block.y,
                                     unsigned(t) / (block.x * block.y)},
                      .block_idx = {bx, by, bz},
                      .block_dim = block,
                      .grid_dim = grid};
          f.sp = initial_stack(g_stacks[size_t(t)].get());
        }
        run_block(r);
      }
    }
  }
}

}  // namespace peng::emu
