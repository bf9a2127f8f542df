// A real wpa_supplicant to check DPP URIs against, with no Wi-Fi hardware
// (../shared/reference/dpp-uri.md): the wired driver on one end of a veth pair inside a
// network namespace made for this instance, spoken to over its control socket exactly as
// wpa_cli does.
//
// Reusable: link station_interop_harness and write
//
//   STATION_START_WPAS_OR_SKIP(wpas);          // skips, or fails under STATION_REQUIRE_INTEROP=1
//   for (const auto& uri : batch) {
//     const auto info = wpas->read_uri(uri);   // nullopt when dpp_qr_code says FAIL
//     ASSERT_TRUE(info) << uri;
//     EXPECT_EQ(info->pkhash, ...);
//   }
//
// Cleanup happens on every exit path: the destructor stops the daemon by its pid and removes
// the namespace and the run folder; if the test process dies instead, the daemon gets SIGKILL
// from the kernel (PR_SET_PDEATHSIG) and the next start() removes namespaces whose owner is gone.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>

namespace station::test::interop {

// What `dpp_bootstrap_info <id>` says.
struct BootstrapInfo {
  std::string type;       // QRCODE, PKEX, NFC-URI
  std::string mac_addr;   // "2c:cf:67:15:88:17" ("00:00:00:00:00:00" when absent)
  std::string info;
  unsigned num_freq = 0;  // channels with a known frequency
  unsigned use_freq = 0;  // the frequency when num_freq == 1, else 0
  std::string curve;      // OpenSSL's name: prime256v1, secp384r1, ..., brainpoolP512r1
  std::string pkhash;     // 64 lowercase hex digits
  int version = 0;
  std::map<std::string, std::string> all;  // every key=value line
};

// True when STATION_REQUIRE_INTEROP=1 (CI): then a test that cannot run must fail, not skip.
bool interop_required();

class WpaSupplicant {
 public:
  // Starts one. Returns nullptr with the reason in *why_not when this machine cannot run it
  // (no wpa_supplicant or ip, no permission to make a network namespace, daemon failed).
  // The daemon is wpa_supplicant from PATH (or /usr/sbin, /sbin), or $STATION_WPA_SUPPLICANT.
  static std::unique_ptr<WpaSupplicant> start(std::string* why_not);

  WpaSupplicant(const WpaSupplicant&) = delete;
  WpaSupplicant& operator=(const WpaSupplicant&) = delete;
  ~WpaSupplicant();

  // One control interface command; returns the reply without a trailing newline. Throws
  // std::runtime_error on a socket error or no reply in time.
  std::string request(const std::string& command, int timeout_ms = 5000);

  std::optional<int> qr_code(const std::string& uri);
  // dpp_qr_code + dpp_bootstrap_info + dpp_bootstrap_remove: how wpa_supplicant reads one URI,
  // or nullopt when it refuses it. For checking many URIs (e.g. a whole batch) on one daemon.
  std::optional<BootstrapInfo> read_uri(const std::string& uri);
  BootstrapInfo bootstrap_info(int id);
  // `dpp_bootstrap_gen <params>`; throws std::runtime_error with the reply on FAIL.
  int bootstrap_gen(const std::string& params);
  std::string bootstrap_get_uri(int id);
  void bootstrap_remove(int id);

  // The daemon's stdout/stderr so far (for failure messages).
  std::string log() const;
  const std::string& netns() const noexcept { return netns_; }
  pid_t pid() const noexcept { return pid_; }

 private:
  WpaSupplicant() = default;
  void stop() noexcept;

  std::filesystem::path dir_;
  std::string netns_;        // named namespace (root), or empty for an anonymous one (unshare -Urn)
  pid_t pid_ = -1;
  int sock_ = -1;
  std::filesystem::path local_;
};

}  // namespace station::test::interop

// In a TEST body: starts `var` (a std::unique_ptr<WpaSupplicant>) or skips the test; under
// STATION_REQUIRE_INTEROP=1 the skip becomes a failure.
#define STATION_START_WPAS_OR_SKIP(var)                                                          \
  std::string var##_why_not;                                                                     \
  auto var = ::station::test::interop::WpaSupplicant::start(&var##_why_not);                     \
  if (!var) {                                                                                    \
    if (::station::test::interop::interop_required()) {                                          \
      FAIL() << "wpa_supplicant interop harness cannot run and STATION_REQUIRE_INTEROP=1: "      \
             << var##_why_not;                                                                   \
    } else {                                                                                     \
      GTEST_SKIP() << "wpa_supplicant interop harness cannot run here: " << var##_why_not;       \
    }                                                                                            \
  }
