// libFuzzer target for the DPP URI parser (pki/dpp.hpp). Every input is used twice:
//
// 1. As a URI: try_parse_uri must return a result or an error, never crash, leak or trip a
//    sanitizer. When it accepts the URI and the generator can write its fields, the URI written
//    back must parse to the same fields and key, and writing that again gives the same text.
// 2. As a recipe for fields (curve, channels from the Annex E table, MAC, info, version,
//    supported curves, host): parse(generate(x)) == x, with pkhash = SHA-256 of the K: bytes.
//
// Any broken property calls __builtin_trap() so libFuzzer records the input.
#include <openssl/ec.h>
#include <openssl/obj_mac.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/bytes.hpp"
#include "common/error.hpp"
#include "pki/dpp.hpp"

namespace {

namespace dpp = station::pki::dpp;

void require(bool ok) {
  if (!ok) __builtin_trap();
}

// Reads bytes as small choices; past the end it yields zeros.
class Choices {
 public:
  Choices(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}
  std::uint8_t byte() { return pos_ < size_ ? data_[pos_++] : 0; }
  unsigned below(unsigned n) { return n == 0 ? 0 : (static_cast<unsigned>(byte()) << 8 | byte()) % n; }

 private:
  const std::uint8_t* data_;
  std::size_t size_;
  std::size_t pos_ = 0;
};

// The curve's generator point as a public key: a valid key, the same on every run.
const dpp::PublicKey& fixed_key(dpp::Curve c) {
  static const std::vector<dpp::PublicKey> keys = [] {
    std::vector<dpp::PublicKey> out;
    constexpr std::array<int, 6> nids{NID_X9_62_prime256v1, NID_secp384r1,       NID_secp521r1,
                                      NID_brainpoolP256r1,  NID_brainpoolP384r1, NID_brainpoolP512r1};
    for (const int nid : nids) {
      EC_GROUP* g = ::EC_GROUP_new_by_curve_name(nid);
      std::array<std::uint8_t, 1 + 66> buf{};
      const std::size_t len = ::EC_POINT_point2oct(g, ::EC_GROUP_get0_generator(g), POINT_CONVERSION_COMPRESSED,
                                                   buf.data(), buf.size(), nullptr);
      ::EC_GROUP_free(g);
      out.push_back(dpp::PublicKey::from_point(dpp::kAllCurves[out.size()], station::ByteView(buf.data(), len)));
    }
    return out;
  }();
  return keys[static_cast<std::size_t>(c)];
}

const std::vector<dpp::Channel>& known_channels() {
  static const std::vector<dpp::Channel> all = [] {
    std::vector<dpp::Channel> out;
    for (unsigned cls = 1; cls <= 255; ++cls)
      for (unsigned ch = 1; ch <= 255; ++ch)
        if (dpp::channel_frequency(cls, ch)) out.push_back({cls, ch});
    return out;
  }();
  return all;
}

std::string text(Choices& in, std::size_t max_len, std::string_view alphabet) {
  std::string s(in.below(static_cast<unsigned>(max_len) + 1), ' ');
  for (auto& c : s) c = alphabet[in.below(static_cast<unsigned>(alphabet.size()))];
  return s;
}

void round_trip_recipe(const std::uint8_t* data, std::size_t size) {
  static const std::string info_chars = [] {
    std::string s;
    for (char c = 0x20; c <= 0x7e; ++c)
      if (c != ';') s.push_back(c);
    return s;
  }();
  Choices in(data, size);
  const dpp::Curve curve = dpp::kAllCurves[in.below(6)];
  const unsigned present = in.byte();
  dpp::UriFields f;
  f.version.reset();
  if (present & 1) {
    const unsigned n = 1 + in.below(dpp::kMaxChannels);
    for (unsigned i = 0; i < n; ++i) f.channels.push_back(known_channels()[in.below(known_channels().size())]);
  }
  if (present & 2) {
    dpp::Mac mac{};
    for (auto& b : mac) b = in.byte();
    f.mac = mac;
  }
  if (present & 4) f.info = text(in, 80, info_chars);
  if (present & 8) f.version = 2 + static_cast<int>(in.below(2));
  if (present & 16) {
    const unsigned bits = 1 + in.below(63);
    std::vector<dpp::Curve> curves;
    for (const auto c : dpp::kAllCurves)
      if ((bits >> static_cast<unsigned>(c)) & 1U) curves.push_back(c);
    f.supported_curves = curves;
  }
  if (present & 32) {
    std::string host = text(in, dpp::kMaxHostLength - 1, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]");
    f.host = "h" + host;
  }
  const auto& key = fixed_key(curve);
  const std::string uri = dpp::generate_uri(key, f);
  auto parsed = dpp::try_parse_uri(uri);
  require(std::holds_alternative<dpp::BootstrapUri>(parsed));
  const auto& u = std::get<dpp::BootstrapUri>(parsed);
  require(u.fields == f);
  require(u.curve == curve);
  require(u.terminated && u.unknown_fields.empty());
  require(u.key_der == key.spki_der());
  require(station::Bytes(u.pkhash.begin(), u.pkhash.end()) == station::sha256(u.key_der));
  require(u.freqs.size() == f.channels.size());
  for (const auto& fr : u.freqs) require(fr.has_value());
}

void parse_arbitrary(const std::uint8_t* data, std::size_t size) {
  const std::string_view uri(reinterpret_cast<const char*>(data), size);
  auto parsed = dpp::try_parse_uri(uri);
  if (const auto* err = std::get_if<dpp::UriError>(&parsed)) {
    require(!err->message.empty());
    require(err->position <= size);
    return;
  }
  const auto& u = std::get<dpp::BootstrapUri>(parsed);
  require(u.freqs.size() == u.fields.channels.size());
  require(u.fields.channels.size() <= dpp::kMaxChannels);
  std::string again;
  try {
    again = dpp::generate_uri(u.key(), u.fields);
  } catch (const station::Error&) {
    return;  // fields the generator does not write (a version other than 2/3, an unknown channel, ...)
  }
  auto reparsed = dpp::try_parse_uri(again);
  require(std::holds_alternative<dpp::BootstrapUri>(reparsed));
  const auto& v = std::get<dpp::BootstrapUri>(reparsed);
  require(v.fields == u.fields);
  require(v.key() == u.key());
  require(dpp::generate_uri(v.key(), v.fields) == again);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  parse_arbitrary(data, size);
  round_trip_recipe(data, size);
  return 0;
}
