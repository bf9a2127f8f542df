#include "labels/template.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "common/error.hpp"
#include "internal/text.hpp"
#include "labels/qr.hpp"

namespace station::labels {
namespace {

constexpr double kMmPerInch = 25.4;
// Smallest module a line printer reliably prints and a phone reliably reads: 0.33 mm, i.e.
// 3 dots at 203 dpi (the usual ZPL advice: ^BQ magnification >= 3), 4 at 300, 8 at 600.
constexpr double kMinModuleMm = 0.33;
// ^BQ magnification is 1..10 (ZPL II guide, ^BQ); keep DataMatrix to the same range.
constexpr int kMaxModuleDots = 10;
constexpr int kQrQuietModules = 4;   // ISO/IEC 18004 §6.3.8
constexpr int kDmQuietModules = 1;   // ISO/IEC 16022 §7.5.5 (one module)
constexpr std::size_t kMaxDataBytes = 2000;

struct Rect {
  std::string what;
  int x, y, w, h;
};

[[noreturn]] void fail(const TemplateSpec& s, const std::string& what) {
  throw Error(Errc::config_error, "template '" + s.name + "': " + what);
}

std::string text_label(const TemplateSpec& s, std::size_t i) {
  return "text[" + std::to_string(i) + "] (" + std::string(to_string(s.texts[i].field)) + ")";
}

}  // namespace

std::string_view to_string(Ecc e) noexcept {
  switch (e) {
    case Ecc::L: return "L";
    case Ecc::M: return "M";
    case Ecc::Q: return "Q";
    case Ecc::H: return "H";
  }
  return "?";
}

std::string_view to_string(TextField f) noexcept {
  switch (f) {
    case TextField::serial: return "serial";
    case TextField::mac: return "mac";
    case TextField::model: return "model";
    case TextField::date: return "date";
    case TextField::batch: return "batch";
    case TextField::fixture: return "fixture";
    case TextField::text: return "text";
  }
  return "?";
}

std::string_view to_string(SecondCodeKind k) noexcept {
  switch (k) {
    case SecondCodeKind::wifi_qr: return "wifi_qr";
    case SecondCodeKind::datamatrix: return "datamatrix";
  }
  return "?";
}

int Template::dots(double mm) const noexcept {
  return static_cast<int>(std::lround(mm * spec_.dpi / kMmPerInch));
}

Template::Template(TemplateSpec spec) : spec_(std::move(spec)) {
  const TemplateSpec& s = spec_;
  if (s.name.empty() || !std::all_of(s.name.begin(), s.name.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
               c == '_' || c == '.';
      })) {
    throw Error(Errc::config_error, "template name '" + s.name +
                                        "' is not valid: use letters, digits, '-', '_' and '.'");
  }
  if (std::find(std::begin(supported_dpis), std::end(supported_dpis), s.dpi) == std::end(supported_dpis)) {
    fail(s, "dpi = " + std::to_string(s.dpi) + " is not supported; use 203, 300 or 600");
  }
  auto check_mm = [&](const std::string& key, double v, double lo, double hi) {
    if (!(v >= lo && v <= hi)) {
      fail(s, key + " = " + std::to_string(v) + " is out of range [" + std::to_string(lo) + ", " +
                  std::to_string(hi) + "]");
    }
  };
  check_mm("width_mm", s.width_mm, 10, 300);
  check_mm("height_mm", s.height_mm, 10, 300);
  width_dots_ = dots(s.width_mm);
  height_dots_ = dots(s.height_mm);
  const int min_module = static_cast<int>(std::ceil(kMinModuleMm * s.dpi / kMmPerInch - 1e-9));

  std::vector<Rect> rects;
  auto inside = [&](const Rect& r) {
    if (r.x < 0 || r.y < 0 || r.x + r.w > width_dots_ || r.y + r.h > height_dots_) {
      fail(s, r.what + " needs " + internal::format_mm(r.w * kMmPerInch / s.dpi) + " x " +
                  internal::format_mm(r.h * kMmPerInch / s.dpi) + " from (" +
                  internal::format_mm(r.x * kMmPerInch / s.dpi) + ", " +
                  internal::format_mm(r.y * kMmPerInch / s.dpi) + ") but the label is " +
                  internal::format_mm(s.width_mm) + " x " + internal::format_mm(s.height_mm) +
                  "; move it, make it smaller or the label larger");
    }
    rects.push_back(r);
  };

  auto code_box = [&](const std::string& what, double x_mm, double y_mm, double size_mm, std::size_t max_bytes,
                      int side, int quiet) {
    check_mm(what + ".size_mm", size_mm, 3, 300);
    check_mm(what + ".x_mm", x_mm, 0, 300);
    check_mm(what + ".y_mm", y_mm, 0, 300);
    CodeBox b;
    b.x = dots(x_mm);
    b.y = dots(y_mm);
    b.box = dots(size_mm);
    b.quiet_modules = quiet;
    b.max_modules = side;
    const int total = side + 2 * quiet;
    b.module = std::min(kMaxModuleDots, b.box / total);
    if (b.module < min_module) {
      const double need = total * min_module * kMmPerInch / s.dpi;
      fail(s, what + " box of " + internal::format_mm(size_mm) + " cannot hold " + std::to_string(max_bytes) +
                  " bytes (" + std::to_string(side) + " modules plus a " + std::to_string(quiet) +
                  "-module quiet zone) with modules of at least " + std::to_string(min_module) + " dots at " +
                  std::to_string(s.dpi) + " dpi; it needs " + internal::format_mm(need) +
                  ": raise " + what + ".size_mm or lower " + what + ".max_data_bytes");
    }
    inside(Rect{what, b.x, b.y, b.box, b.box});
    return b;
  };

  if (s.qr.max_data_bytes < 1 || s.qr.max_data_bytes > kMaxDataBytes) {
    fail(s, "qr.max_data_bytes must be between 1 and " + std::to_string(kMaxDataBytes));
  }
  qr_ = code_box("qr", s.qr.x_mm, s.qr.y_mm, s.qr.size_mm, s.qr.max_data_bytes,
                 qr_side_for_bytes(s.qr.max_data_bytes, s.qr.ecc), kQrQuietModules);

  if (s.second_code) {
    const SecondCodeSpec& c = *s.second_code;
    if (c.max_data_bytes < 1 || c.max_data_bytes > kMaxDataBytes) {
      fail(s, "second_code.max_data_bytes must be between 1 and " + std::to_string(kMaxDataBytes));
    }
    int side = 0;
    int quiet = kQrQuietModules;
    if (c.kind == SecondCodeKind::wifi_qr) {
      side = qr_side_for_bytes(c.max_data_bytes, c.ecc);
    } else {
      // Lower-case letters cost one codeword each in ASCII mode: the worst case for printable
      // ASCII, which is what serial numbers are (checked at render).
      try {
        side = encode_datamatrix(std::string(c.max_data_bytes, 'x')).width;
      } catch (const Error&) {
        fail(s, "second_code.max_data_bytes = " + std::to_string(c.max_data_bytes) +
                    " is more than a DataMatrix symbol holds");
      }
      quiet = kDmQuietModules;
    }
    second_ = code_box("second_code", c.x_mm, c.y_mm, c.size_mm, c.max_data_bytes, side, quiet);
  }

  texts_.reserve(s.texts.size());
  for (std::size_t i = 0; i < s.texts.size(); ++i) {
    const TextSpec& t = s.texts[i];
    const std::string what = text_label(s, i);
    check_mm(what + ".height_mm", t.height_mm, 1, 50);
    check_mm(what + ".x_mm", t.x_mm, 0, 300);
    check_mm(what + ".y_mm", t.y_mm, 0, 300);
    const auto prefix_len = internal::printable_utf8_length(t.prefix);
    if (!prefix_len) fail(s, what + ".prefix is not printable UTF-8");
    std::size_t chars = *prefix_len;
    if (t.field == TextField::text) {
      const auto value_len = internal::printable_utf8_length(t.value);
      if (!value_len || *value_len == 0) fail(s, what + ".value must be non-empty printable UTF-8");
      chars += *value_len;
    } else {
      if (!t.value.empty()) fail(s, what + ".value is only for field = \"text\"");
      if (t.max_chars < 1 || t.max_chars > 200) fail(s, what + ".max_chars must be between 1 and 200");
      if (t.field == TextField::mac && t.max_chars < 17) {
        fail(s, what + ".max_chars must be at least 17: a MAC reads AA:BB:CC:DD:EE:FF");
      }
      chars += t.max_chars;
    }
    TextBox b;
    b.x = dots(t.x_mm);
    b.y = dots(t.y_mm);
    b.height = dots(t.height_mm);
    b.char_width = internal::char_width_for_height(b.height);
    b.width = static_cast<int>(chars) * b.char_width;
    if (b.x + b.width > width_dots_) {
      fail(s, what + ": " + std::to_string(chars) + " characters at " + internal::format_mm(t.height_mm) +
                  " need " + internal::format_mm(b.width * kMmPerInch / s.dpi) + " from x_mm = " +
                  internal::format_mm(t.x_mm) + " but the label is " + internal::format_mm(s.width_mm) +
                  " wide; shorten the prefix, lower max_chars or height_mm, or move it left");
    }
    inside(Rect{what, b.x, b.y, b.width, b.height});
    texts_.push_back(b);
  }

  for (std::size_t i = 0; i < rects.size(); ++i) {
    for (std::size_t j = i + 1; j < rects.size(); ++j) {
      const Rect& a = rects[i];
      const Rect& b = rects[j];
      if (a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h) {
        fail(s, a.what + " and " + b.what + " overlap; move one of them");
      }
    }
  }
}

Template Template::with_dpi(int dpi) const {
  TemplateSpec copy = spec_;
  copy.dpi = dpi;
  return Template(std::move(copy));
}

std::vector<std::string> builtin_template_names() { return {"default", "softap"}; }

TemplateSpec builtin_template_spec(std::string_view name) {
  // 76 x 32 mm (3 x 1.25 in), a stock Zebra size: the QR on the left sized for the longest
  // DPP URI (brainpoolP512r1 key, channel list and an I: field: ~210 bytes; 250 allowed, QR
  // version 11 at ECC M), the human-readable fields on the right.
  TemplateSpec s;
  s.name = "default";
  s.width_mm = 76;
  s.height_mm = 32;
  s.dpi = 203;
  s.qr = QrSpec{1.0, 2.0, 28.0, 250, Ecc::M};
  s.texts = {
      {TextField::serial, 30, 2.0, 3.0, 20, "SN ", ""},
      {TextField::mac, 30, 7.0, 2.5, 17, "MAC ", ""},
      {TextField::model, 30, 11.5, 2.5, 20, "Model ", ""},
      {TextField::date, 30, 16.0, 2.5, 10, "Date ", ""},
      {TextField::batch, 30, 20.5, 2.5, 20, "Batch ", ""},
      {TextField::fixture, 30, 25.0, 2.5, 4, "Fixture ", ""},
  };
  if (name == "default") return s;
  if (name == "softap") {
    // The same, 50 mm tall, with the SoftAP credentials as a WIFI: QR below the text.
    s.name = "softap";
    s.height_mm = 50;
    s.second_code = SecondCodeSpec{SecondCodeKind::wifi_qr, 30, 30, 19, 100, Ecc::M};
    s.texts.push_back({TextField::text, 51, 31, 2.5, 0, "", "Wi-Fi setup"});
    return s;
  }
  throw Error(Errc::not_found, "no built-in label template '" + std::string(name) +
                                   "'; built-in templates are 'default' and 'softap', or give a template file");
}

Template builtin_template(std::string_view name) { return Template(builtin_template_spec(name)); }

}  // namespace station::labels
