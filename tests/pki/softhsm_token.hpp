// A SoftHSM2 token of the test's own, in the test's temporary folder (never shared).
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>

#include "common/secure.hpp"
#include "pki/hsm.hpp"
#include "pki/pkcs11.hpp"
#include "support.hpp"

namespace station::test {

class SoftHsmToken {
 public:
  explicit SoftHsmToken(const std::string& label = "test-token") : label_(label) {
    std::filesystem::create_directory(dir_ / "tokens");
    write_file(dir_ / "softhsm2.conf", "directories.tokendir = " + (dir_ / "tokens").string() +
                                           "\nobjectstore.backend = file\nlog.level = ERROR\n");
    ::setenv("SOFTHSM2_CONF", (dir_ / "softhsm2.conf").c_str(), 1);
    write_file(dir_ / "user.pin", std::string(kUserPin) + "\n");
    auto module = pki::p11::Module::load(STATION_SOFTHSM_MODULE);
    module->init_token(*module->find_free_slot(), label_, SecretString(std::string(kSoPin)),
                       SecretString(std::string(kUserPin)));
  }

  pki::HsmConfig config(const std::string& module = STATION_SOFTHSM_MODULE) const {
    pki::HsmConfig c;
    c.module = module;
    c.token_label = label_;
    c.pin = "file:" + (dir_ / "user.pin").string();
    return c;
  }
  const std::filesystem::path& dir() const { return dir_.path(); }

  static constexpr const char* kUserPin = "user-pin-1234";
  static constexpr const char* kSoPin = "so-pin-5678";

 private:
  TempDir dir_{"softhsm"};
  std::string label_;
};

}  // namespace station::test
