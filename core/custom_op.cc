#include "peng/core/custom_op.h"

#include <map>
#include <utility>
#include <vector>

#include "peng/core/backend.h"
#include "peng/core/error.h"

namespace peng {
namespace {

const char* type_name(DeviceType type) { return type == DeviceType::kCuda ? "cuda" : "cpu"; }

std::map<std::pair<std::string, DeviceType>, OpFn>& registry() {
  static std::map<std::pair<std::string, DeviceType>, OpFn> ops;
  return ops;
}

}  // namespace

void register_op(const std::string& name, DeviceType type, OpFn fn) {
  PENG_INPUT_CHECK(!name.empty(), "register_op: the op has no name");
  PENG_INPUT_CHECK(bool(fn), "register_op: op '", name, "' has no function");
  PENG_INPUT_CHECK(registry().emplace(std::make_pair(name, type), std::move(fn)).second,
                   "register_op: op '", name, "' is already registered for ", type_name(type));
}

bool has_op(const std::string& name, DeviceType type) {
  return registry().contains(std::make_pair(name, type));
}

void call_op(Backend& be, const std::string& name, std::initializer_list<const Tensor*> inputs,
             std::initializer_list<Tensor*> outputs) {
  const DeviceType type = be.device().type;
  const auto it = registry().find(std::make_pair(name, type));
  if (it == registry().end()) {
    std::string where;
    for (const auto& [key, fn] : registry()) {
      if (key.first == name)
        where += (where.empty() ? "" : ", ") + std::string(type_name(key.second));
    }
    throw InputError(detail::concat(
        "op '", name, "' has no ", type_name(type),
        " implementation (registered for: ", where.empty() ? "no device" : where, ")"));
  }
  const std::vector<const Tensor*> in(inputs);
  const std::vector<Tensor*> out(outputs);
  it->second(be, OpArgs(in), OpOutputs(out));
}

}  // namespace peng
