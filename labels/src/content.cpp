#include "internal/content.hpp"

#include "common/error.hpp"
#include "internal/text.hpp"

namespace station::labels::internal {
namespace {

[[noreturn]] void bad(const Template& tpl, const std::string& what) {
  throw Error(Errc::invalid_argument, "label for template '" + tpl.name() + "': " + what);
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

void check_qr_data(const Template& tpl, std::string_view uri) {
  if (uri.empty()) bad(tpl, "the QR data (DPP URI) is empty");
  if (uri.size() > tpl.spec().qr.max_data_bytes) {
    bad(tpl, "the DPP URI is " + std::to_string(uri.size()) + " bytes but the template's QR holds at most " +
                 std::to_string(tpl.spec().qr.max_data_bytes) + " (qr.max_data_bytes); use a template with a larger QR box");
  }
}

std::string_view text_value(const Template& tpl, std::size_t i, const LabelData& data,
                            std::array<char, 17>& scratch) {
  const TextSpec& t = tpl.spec().texts[i];
  std::string_view v;
  switch (t.field) {
    case TextField::serial: v = data.serial; break;
    case TextField::model: v = data.model; break;
    case TextField::date: v = data.date; break;
    case TextField::batch: v = data.batch; break;
    case TextField::fixture: v = data.fixture; break;
    case TextField::text: return t.value;
    case TextField::mac: {
      if (data.mac.empty()) return {};
      std::size_t n = 0;
      int digits[12];
      for (char c : data.mac) {
        if (c == ':' || c == '-') continue;
        const int h = hex_value(c);
        if (h < 0 || n == 12) bad(tpl, "MAC '" + data.mac + "' is not 12 hex digits");
        digits[n++] = h;
      }
      if (n != 12) bad(tpl, "MAC '" + data.mac + "' is not 12 hex digits");
      static constexpr char kHex[] = "0123456789ABCDEF";
      for (std::size_t k = 0, o = 0; k < 12; k += 2) {
        scratch[o++] = kHex[digits[k]];
        scratch[o++] = kHex[digits[k + 1]];
        if (k < 10) scratch[o++] = ':';
      }
      return {scratch.data(), scratch.size()};
    }
  }
  if (v.empty()) return v;
  const auto len = printable_utf8_length(v);
  if (!len) bad(tpl, std::string(to_string(t.field)) + " is not printable UTF-8 text");
  if (*len > t.max_chars) {
    bad(tpl, std::string(to_string(t.field)) + " '" + std::string(v) + "' is " + std::to_string(*len) +
                 " characters; the template allows " + std::to_string(t.max_chars) +
                 " (raise its max_chars, which must still fit the label)");
  }
  return v;
}

std::string second_code_data(const Template& tpl, const LabelData& data) {
  const auto& sc = tpl.spec().second_code;
  if (!sc) return {};
  std::string payload;
  if (sc->kind == SecondCodeKind::wifi_qr) {
    if (!data.softap) bad(tpl, "the template has a WIFI: code but the label has no SoftAP credentials");
    payload = wifi_payload(*data.softap);
  } else {
    if (data.serial.empty()) bad(tpl, "the template's DataMatrix carries the serial, which is empty");
    for (char c : data.serial) {
      if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e) {
        bad(tpl, "the DataMatrix serial must be printable ASCII");
      }
    }
    payload = data.serial;
  }
  if (payload.size() > sc->max_data_bytes) {
    bad(tpl, "the second code's data is " + std::to_string(payload.size()) + " bytes; the template allows " +
                 std::to_string(sc->max_data_bytes) + " (second_code.max_data_bytes)");
  }
  return payload;
}

}  // namespace station::labels::internal
