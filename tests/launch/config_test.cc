// Config loading: defaults, text files, --set paths, flags as shorthands.
#include "peng/launch/config.h"

#include <gtest/gtest.h>

#include "peng/core/error.h"
#include "tests/util/test_util.h"

namespace peng {
namespace {

TEST(Config, FileThenSetOverrides) {
  testing::TempDir tmp;
  testing::write_file(tmp / "c.pbtxt",
                      "model { n_layer: 3 }\noptim { lr: 0.5 }\ndata { train: \"a.bin\" }\n");
  proto::TrainConfig c = default_train_config();
  merge_config_file((tmp / "c.pbtxt").string(), c);
  EXPECT_EQ(c.model().n_layer(), 3);
  EXPECT_FLOAT_EQ(c.optim().lr(), 0.5f);
  EXPECT_FLOAT_EQ(c.optim().beta2(), 0.95f);  // default kept
  set_config_field("optim.lr=3e-4", c);
  set_config_field("data.train=dir with \"quotes\"/x.bin", c);
  set_config_field("logging.quiet=true", c);
  EXPECT_FLOAT_EQ(c.optim().lr(), 3e-4f);
  EXPECT_EQ(c.data().train(), "dir with \"quotes\"/x.bin");
  EXPECT_TRUE(c.logging().quiet());
}

TEST(Config, SetErrorsNameThePath) {
  proto::TrainConfig c = default_train_config();
  auto message = [&](const std::string& a) -> std::string {
    try {
      set_config_field(a, c);
    } catch (const InputError& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_NE(message("optim.lrr=1").find("optim.lrr"), std::string::npos);
  EXPECT_NE(message("training.steps=ten").find("training.steps"), std::string::npos);
  EXPECT_NE(message("training=3").find("training"), std::string::npos);
  EXPECT_NE(message("noequals").find("noequals"), std::string::npos);
  EXPECT_NE(message("optim.lr.x=1").find("optim.lr.x"), std::string::npos);
}

// The protobuf type of a dotted field path of TrainConfig (nullptr when it does not exist).
const google::protobuf::FieldDescriptor* field_at(const std::string& path) {
  const google::protobuf::Descriptor* d = proto::TrainConfig::descriptor();
  const google::protobuf::FieldDescriptor* f = nullptr;
  for (size_t begin = 0; d;) {
    const size_t dot = path.find('.', begin);
    f = d->FindFieldByName(path.substr(begin, dot - begin));
    if (!f || dot == std::string::npos) break;
    d = f->message_type();
    begin = dot + 1;
  }
  return f;
}

TEST(Config, EveryFlagNamesARealField) {
  proto::TrainConfig c = default_train_config();
  for (const ConfigFlag& f : config_flags()) {
    const google::protobuf::FieldDescriptor* field = field_at(f.field);
    ASSERT_NE(field, nullptr) << f.flag;
    // A string value parses for string fields only; numeric fields take "1".
    const std::string value = field->type() == google::protobuf::FieldDescriptor::TYPE_STRING ? "x"
                              : f.is_switch ? "true"
                                            : "1";
    EXPECT_NO_THROW(set_config_field(std::string(f.field) + "=" + value, c)) << f.flag;
  }
}

TEST(Config, ValidationNamesTheField) {
  proto::TrainConfig c = default_train_config();
  c.mutable_data()->set_train("x.bin");
  validate_train_config(c);
  c.mutable_training()->set_micro_batch_size(3);
  try {
    validate_train_config(c);
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("micro_batch_size"), std::string::npos);
  }
  c.mutable_training()->set_micro_batch_size(0);
  c.mutable_schedule()->set_lr_schedule("wsd");
  EXPECT_THROW(validate_train_config(c), InputError);
}

}  // namespace
}  // namespace peng
