// Safetensors reader/writer: round trips, the reference file, and every class of bad input
// (each error must name the file and the tensor at fault).
#include "peng/core/io/safetensors.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>

#include "peng/core/error.h"
#include "tests/util/test_util.h"

namespace peng {
namespace {

namespace fs = std::filesystem;
using peng::testing::read_file;
using peng::testing::reference_dir;
using peng::testing::TempDir;
using peng::testing::write_file;

// A safetensors file from a raw header text and data bytes.
std::string make_file(const std::string& header, const std::string& data = "") {
  uint64_t n = header.size();
  std::string out(reinterpret_cast<const char*>(&n), 8);
  return out + header + data;
}

// Opens `bytes` written to a temp file and returns the InputError message ("" if none).
std::string open_error(const TempDir& dir, const std::string& bytes,
                       const std::string& read_name = "") {
  fs::path p = dir / "bad.safetensors";
  write_file(p, bytes);
  try {
    SafetensorsFile f = SafetensorsFile::open(p);
    if (!read_name.empty()) f.read(read_name);
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

std::string tensor_bytes(const Tensor& t) {
  return std::string(static_cast<const char*>(t.raw_data()), t.nbytes());
}

TEST(Safetensors, RoundTripEveryDtype) {
  TempDir dir;
  std::vector<std::pair<std::string, Tensor>> tensors;
  tensors.emplace_back("f32",
                       Tensor::from_vector<float>({1.5f, -2.25f, 3e-30f, 0.f, -0.f, 7.f}, {2, 3}));
  Tensor bf = Tensor::empty({5}, DType::kBF16);
  Tensor hf = Tensor::empty({1, 5}, DType::kF16);
  for (int i = 0; i < 5; ++i) {
    bf.data<bf16_t>()[i].bits = f32_to_bf16(0.1f * float(i) - 0.3f);
    hf.data<f16_t>()[i].bits = f32_to_f16(1000.f * float(i) - 1.f / 3.f);
  }
  tensors.emplace_back("bf16", bf);
  tensors.emplace_back("f16", hf);
  tensors.emplace_back("i32", Tensor::from_vector<int32_t>({-7, 0, 2147483647}, {3}));
  tensors.emplace_back("u16", Tensor::from_vector<uint16_t>({0, 1, 65535, 42}, {2, 2}));
  tensors.emplace_back("f64", Tensor::from_vector<double>({M_PI, -1e300}, {2, 1}));
  tensors.emplace_back("scalar", Tensor::from_vector<float>({42.f}, {}));
  tensors.emplace_back("empty", Tensor::empty({0, 3}, DType::kF32));
  const std::map<std::string, std::string> meta = {{"format", "pt"}, {"step", "12"}};

  fs::path p = dir / "rt.safetensors";
  write_safetensors(p, tensors, meta);
  EXPECT_FALSE(fs::exists(p.string() + ".tmp"));

  SafetensorsFile f = SafetensorsFile::open(p);
  EXPECT_EQ(f.metadata(), meta);
  EXPECT_EQ(f.data_offset() % 8, 0u);  // header padded to a multiple of 8
  ASSERT_EQ(f.names().size(), tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& [name, want] = tensors[i];
    EXPECT_EQ(f.names()[i], name);  // written order is kept
    const auto& info = f.info(name);
    EXPECT_EQ(info.dtype, want.dtype()) << name;
    EXPECT_EQ(info.dtype_name, safetensors_dtype_name(want.dtype()));
    EXPECT_EQ(info.shape, want.shape()) << name;
    Tensor got = f.read(name);
    EXPECT_EQ(got.dtype(), want.dtype()) << name;
    EXPECT_EQ(got.shape(), want.shape()) << name;
    EXPECT_EQ(tensor_bytes(got), tensor_bytes(want)) << name;
    EXPECT_EQ(f.read_bytes(name), tensor_bytes(want)) << name;
  }

  // Writing what was read reproduces the file byte for byte.
  std::vector<std::pair<std::string, Tensor>> again;
  for (const auto& n : f.names()) again.emplace_back(n, f.read(n));
  write_safetensors(dir / "again.safetensors", again, f.metadata());
  EXPECT_EQ(read_file(dir / "again.safetensors"), read_file(p));
}

TEST(Safetensors, WriterOverwritesAtomicallyAndChecksNames) {
  TempDir dir;
  fs::path p = dir / "w.safetensors";
  Tensor a = Tensor::from_vector<float>({1, 2}, {2});
  write_safetensors(p, {{"a", a}});
  write_safetensors(p, {{"b", a}, {"c", a}});
  EXPECT_EQ(SafetensorsFile::open(p).names(), (std::vector<std::string>{"b", "c"}));
  EXPECT_TRUE(SafetensorsFile::open(p).metadata().empty());

  auto write_error = [&](const std::vector<std::pair<std::string, Tensor>>& t) -> std::string {
    try {
      write_safetensors(dir / "x.safetensors", t);
    } catch (const InputError& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_TRUE(contains(write_error({{"dup", a}, {"dup", a}}), "'dup'"));
  EXPECT_TRUE(contains(write_error({{"__metadata__", a}}), "__metadata__"));
  EXPECT_TRUE(contains(write_error({{"", a}}), "empty name"));
  EXPECT_TRUE(contains(write_error({{"undef", Tensor()}}), "'undef'"));
  EXPECT_FALSE(fs::exists(dir / "x.safetensors"));
  EXPECT_FALSE(fs::exists(dir / "x.safetensors.tmp"));

  // A folder that does not exist is an IoError naming the file.
  try {
    write_safetensors(dir / "no" / "such" / "dir.safetensors", {{"a", a}});
    FAIL() << "expected IoError";
  } catch (const IoError& e) {
    EXPECT_TRUE(contains(e.what(), "dir.safetensors")) << e.what();
  }
}

TEST(Safetensors, ReadsReferenceCheckpoint) {
  fs::path p = reference_dir() / "gpt2-tiny" / "model.safetensors";
  SafetensorsFile f = SafetensorsFile::open(p);
  std::vector<std::string> names = f.names();
  ASSERT_EQ(names.size(), 2u + 2u * 12u + 2u);
  EXPECT_EQ(names.front(), "wte.weight");
  EXPECT_EQ(names[1], "wpe.weight");
  EXPECT_EQ(names[2], "h.0.ln_1.weight");
  EXPECT_EQ(names.back(), "ln_f.bias");
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.info("wte.weight").shape, (Shape{256, 64}));
  EXPECT_EQ(f.info("wpe.weight").shape, (Shape{16, 64}));
  EXPECT_EQ(f.info("h.1.attn.c_attn.weight").shape, (Shape{64, 192}));
  EXPECT_EQ(f.info("h.1.mlp.c_proj.weight").shape, (Shape{256, 64}));
  EXPECT_EQ(f.info("ln_f.bias").shape, (Shape{64}));
  for (const auto& n : names) EXPECT_EQ(f.info(n).dtype_name, "F32") << n;

  // wte ~ N(0, 0.02^2); ln_1.weight ~ 1 + N(0, 0.1^2).
  Tensor wte = f.read("wte.weight");
  double sum = 0, sq = 0;
  for (int64_t i = 0; i < wte.numel(); ++i) {
    float v = wte.data<float>()[i];
    ASSERT_TRUE(std::isfinite(v));
    sum += v;
    sq += double(v) * v;
  }
  double mean = sum / double(wte.numel());
  double std = std::sqrt(sq / double(wte.numel()) - mean * mean);
  EXPECT_NEAR(mean, 0.0, 0.002);
  EXPECT_NEAR(std, 0.02, 0.002);
  Tensor ln = f.read("h.0.ln_1.weight");
  double ln_mean = 0;
  for (int64_t i = 0; i < ln.numel(); ++i) ln_mean += ln.data<float>()[i];
  EXPECT_NEAR(ln_mean / double(ln.numel()), 1.0, 0.05);

  // Our writer reproduces the Python reference writer's file byte for byte.
  TempDir dir;
  std::vector<std::pair<std::string, Tensor>> all;
  for (const auto& n : names) all.emplace_back(n, f.read(n));
  write_safetensors(dir / "copy.safetensors", all, f.metadata());
  EXPECT_EQ(read_file(dir / "copy.safetensors"), read_file(p));
}

TEST(Safetensors, MissingFileAndUnknownTensor) {
  TempDir dir;
  try {
    SafetensorsFile::open(dir / "nope.safetensors");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_TRUE(contains(e.what(), "nope.safetensors")) << e.what();
  }
  write_safetensors(dir / "a.safetensors", {{"a", Tensor::zeros({2})}});
  SafetensorsFile f = SafetensorsFile::open(dir / "a.safetensors");
  EXPECT_TRUE(f.contains("a"));
  EXPECT_FALSE(f.contains("b"));
  try {
    f.read("b");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_TRUE(contains(e.what(), "'b'")) << e.what();
    EXPECT_TRUE(contains(e.what(), "a.safetensors")) << e.what();
  }
}

TEST(Safetensors, RejectsTruncatedFile) {
  TempDir dir;
  std::string msg = open_error(dir, std::string("\x10\0\0", 3));
  EXPECT_TRUE(contains(msg, "bad.safetensors")) << msg;
  EXPECT_TRUE(contains(msg, "too small")) << msg;
  EXPECT_TRUE(contains(open_error(dir, ""), "too small"));

  // The reference file cut short: the last tensor runs past the end of the data.
  std::string ref = read_file(reference_dir() / "gpt2-tiny" / "model.safetensors");
  msg = open_error(dir, ref.substr(0, ref.size() - 10));
  EXPECT_TRUE(contains(msg, "bad.safetensors")) << msg;
  EXPECT_TRUE(contains(msg, "'ln_f.bias'")) << msg;
  EXPECT_TRUE(contains(msg, "past the end")) << msg;

  // Cut inside the header.
  msg = open_error(dir, ref.substr(0, 100));
  EXPECT_TRUE(contains(msg, "header length")) << msg;
}

TEST(Safetensors, RejectsHeaderLengthTooLarge) {
  TempDir dir;
  std::string bytes = make_file("{}");
  uint64_t n = 1000;  // beyond the file
  std::memcpy(bytes.data(), &n, 8);
  std::string msg = open_error(dir, bytes);
  EXPECT_TRUE(contains(msg, "bad.safetensors")) << msg;
  EXPECT_TRUE(contains(msg, "header length 1000")) << msg;

  n = uint64_t(1) << 62;  // absurd
  std::memcpy(bytes.data(), &n, 8);
  msg = open_error(dir, bytes);
  EXPECT_TRUE(contains(msg, "exceeds the limit")) << msg;
}

TEST(Safetensors, RejectsInvalidJson) {
  TempDir dir;
  std::string msg = open_error(dir, make_file("{\"a\": {\"dtype\": \"F32\""));
  EXPECT_TRUE(contains(msg, "bad.safetensors")) << msg;
  EXPECT_TRUE(contains(msg, "not valid JSON")) << msg;
  msg = open_error(dir, make_file("[1, 2]  "));
  EXPECT_TRUE(contains(msg, "expected an object")) << msg;
  msg = open_error(dir, make_file(""));
  EXPECT_TRUE(contains(msg, "not valid JSON")) << msg;
  msg = open_error(dir, make_file(R"({"a": 3})"));
  EXPECT_TRUE(contains(msg, "'a'")) << msg;
  msg = open_error(dir, make_file(R"({"__metadata__": {"k": 1}})"));
  EXPECT_TRUE(contains(msg, "__metadata__")) << msg;
  EXPECT_TRUE(contains(msg, "'k'")) << msg;
  msg = open_error(dir, make_file(R"({"x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                                      "x": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})",
                                  std::string(8, '\0')));
  EXPECT_TRUE(contains(msg, "'x'")) << msg;
  EXPECT_TRUE(contains(msg, "more than once")) << msg;
  msg = open_error(
      dir, make_file(R"({"nodt": {"shape": [1], "data_offsets": [0, 4]}})", std::string(4, '\0')));
  EXPECT_TRUE(contains(msg, "'nodt'")) << msg;
  EXPECT_TRUE(contains(msg, "dtype")) << msg;
}

TEST(Safetensors, RejectsOffsetsOutsideData) {
  TempDir dir;
  std::string msg =
      open_error(dir, make_file(R"({"ok": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                         "far": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}})",
                                std::string(12, '\0')));
  EXPECT_TRUE(contains(msg, "bad.safetensors")) << msg;
  EXPECT_TRUE(contains(msg, "'far'")) << msg;
  EXPECT_TRUE(contains(msg, "past the end")) << msg;

  msg = open_error(dir,
                   make_file(R"({"rev": {"dtype": "F32", "shape": [0], "data_offsets": [8, 4]}})",
                             std::string(8, '\0')));
  EXPECT_TRUE(contains(msg, "'rev'")) << msg;
  EXPECT_TRUE(contains(msg, "begin > end")) << msg;

  msg = open_error(
      dir, make_file(R"({"neg": {"dtype": "F32", "shape": [1], "data_offsets": [-4, 0]}})"));
  EXPECT_TRUE(contains(msg, "'neg'")) << msg;
  msg =
      open_error(dir, make_file(R"({"one": {"dtype": "F32", "shape": [1], "data_offsets": [0]}})"));
  EXPECT_TRUE(contains(msg, "'one'")) << msg;

  msg = open_error(dir, make_file(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                      "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
                                  std::string(12, '\0')));
  EXPECT_TRUE(contains(msg, "'a'")) << msg;
  EXPECT_TRUE(contains(msg, "'b'")) << msg;
  EXPECT_TRUE(contains(msg, "overlap")) << msg;
}

TEST(Safetensors, RejectsLengthNotMatchingShape) {
  TempDir dir;
  std::string msg = open_error(
      dir, make_file(R"({"w": {"dtype": "BF16", "shape": [2, 3], "data_offsets": [0, 24]}})",
                     std::string(24, '\0')));
  EXPECT_TRUE(contains(msg, "bad.safetensors")) << msg;
  EXPECT_TRUE(contains(msg, "'w'")) << msg;
  EXPECT_TRUE(contains(msg, "needs 12 bytes")) << msg;

  // numel * size overflows 64 bits: must be caught, not wrapped around.
  msg = open_error(
      dir,
      make_file(
          R"({"huge": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 0]}})"));
  EXPECT_TRUE(contains(msg, "'huge'")) << msg;
  EXPECT_TRUE(contains(msg, "too large")) << msg;
  msg = open_error(
      dir,
      make_file(
          R"({"wrap": {"dtype": "F32", "shape": [4611686018427387904, 4], "data_offsets": [0, 0]}})"));
  EXPECT_TRUE(contains(msg, "'wrap'")) << msg;
}

TEST(Safetensors, RejectsUnknownDtype) {
  TempDir dir;
  std::string msg =
      open_error(dir, make_file(R"({"q": {"dtype": "Q4_K", "shape": [2], "data_offsets": [0, 2]}})",
                                std::string(2, '\0')));
  EXPECT_TRUE(contains(msg, "bad.safetensors")) << msg;
  EXPECT_TRUE(contains(msg, "'q'")) << msg;
  EXPECT_TRUE(contains(msg, "Q4_K")) << msg;
  msg = open_error(dir, make_file(R"({"q": {"dtype": 4, "shape": [2], "data_offsets": [0, 8]}})",
                                  std::string(8, '\0')));
  EXPECT_TRUE(contains(msg, "'q'")) << msg;

  // I64 is a valid safetensors dtype: the file opens, but reading it names the tensor.
  fs::path p = dir / "i64.safetensors";
  write_file(p, make_file(R"({"ids": {"dtype": "I64", "shape": [2], "data_offsets": [0, 16]}})",
                          std::string(16, '\0')));
  SafetensorsFile f = SafetensorsFile::open(p);
  EXPECT_EQ(f.info("ids").dtype_name, "I64");
  EXPECT_FALSE(f.info("ids").dtype.has_value());
  try {
    f.read("ids");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_TRUE(contains(e.what(), "'ids'")) << e.what();
    EXPECT_TRUE(contains(e.what(), "I64")) << e.what();
  }
}

TEST(Safetensors, RejectsNegativeShape) {
  TempDir dir;
  std::string msg = open_error(
      dir, make_file(R"({"n": {"dtype": "F32", "shape": [2, -3], "data_offsets": [0, 0]}})"));
  EXPECT_TRUE(contains(msg, "bad.safetensors")) << msg;
  EXPECT_TRUE(contains(msg, "'n'")) << msg;
  EXPECT_TRUE(contains(msg, "-3")) << msg;
  msg = open_error(dir,
                   make_file(R"({"f": {"dtype": "F32", "shape": [2.5], "data_offsets": [0, 0]}})"));
  EXPECT_TRUE(contains(msg, "'f'")) << msg;
  msg =
      open_error(dir, make_file(R"({"s": {"dtype": "F32", "shape": "2", "data_offsets": [0, 8]}})",
                                std::string(8, '\0')));
  EXPECT_TRUE(contains(msg, "'s'")) << msg;
}

TEST(Safetensors, AcceptsUnpaddedHeaderAndGaps) {
  // Other writers need not pad the header; gaps between tensors are harmless.
  TempDir dir;
  fs::path p = dir / "odd.safetensors";
  float v[2] = {1.f, -2.f};
  std::string data(3, 'x');
  data.append(reinterpret_cast<const char*>(v), 8);
  write_file(p, make_file(R"({"v":{"dtype":"F32","shape":[2],"data_offsets":[3,11]}})", data));
  SafetensorsFile f = SafetensorsFile::open(p);
  Tensor t = f.read("v");
  EXPECT_EQ(t.data<float>()[0], 1.f);
  EXPECT_EQ(t.data<float>()[1], -2.f);
}

}  // namespace
}  // namespace peng
