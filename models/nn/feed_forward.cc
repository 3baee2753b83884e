#include "peng/models/nn/feed_forward.h"

#include <map>

#include "peng/core/error.h"
#include "peng/models/nn/mlp.h"

namespace peng {
namespace {

std::map<std::string, FeedForwardBuilder>& registry() {
  static std::map<std::string, FeedForwardBuilder> layers;
  return layers;
}

}  // namespace

void register_feed_forward(const std::string& name, FeedForwardBuilder build) {
  PENG_INPUT_CHECK(!name.empty(), "register_feed_forward: the layer has no name");
  PENG_INPUT_CHECK(bool(build), "register_feed_forward: layer '", name, "' has no builder");
  PENG_INPUT_CHECK(registry().emplace(name, std::move(build)).second,
                   "register_feed_forward: a layer named '", name, "' is already registered");
}

std::unique_ptr<FeedForward> make_feed_forward(ParameterSet& params, const std::string& prefix,
                                               const DecoderConfig& config, const TpGroup& tp) {
  if (config.ffn_layer.empty()) return std::make_unique<Mlp>(params, prefix, config, tp);
  const auto it = registry().find(config.ffn_layer);
  if (it == registry().end()) {
    std::string known;
    for (const auto& [name, build] : registry()) known += (known.empty() ? "" : ", ") + name;
    throw InputError("the model's ffn_layer (family " + config.family +
                     "): no feed-forward layer '" + config.ffn_layer +
                     "' is registered (registered: " + (known.empty() ? "none" : known) + ")");
  }
  return it->second(params, prefix, config, tp);
}

}  // namespace peng
