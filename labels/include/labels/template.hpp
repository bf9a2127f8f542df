// Label templates: the physical layout of a device label (size, printer resolution, where the
// DPP QR code and each text field go, an optional second code), validated once at load so
// that rendering never has to clip or guess. All positions are in millimetres from the
// label's top-left corner; they are resolved to printer dots for the template's dpi.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace station::labels {

// QR error-correction level (ISO/IEC 18004 §7.5.1). M is the default: ~15% recovery.
enum class Ecc { L, M, Q, H };

// What a text line shows. `text` is a fixed string from the template (`value`).
enum class TextField { serial, mac, model, date, batch, fixture, text };

// The optional second code: the device's SoftAP credentials as a `WIFI:` QR code (what phone
// cameras join directly), or the serial number as an ECC 200 DataMatrix (libdmtx).
enum class SecondCodeKind { wifi_qr, datamatrix };

// The printer resolutions a template can target (Zebra 8, 12 and 24 dots/mm).
inline constexpr int supported_dpis[] = {203, 300, 600};

struct QrSpec {
  double x_mm = 1.0;             // top-left of the code's box, quiet zone included
  double y_mm = 1.0;
  double size_mm = 28.0;         // side of the square box the code (with its quiet zone) must fit
  std::size_t max_data_bytes = 250;  // longest data the box must hold (a brainpool-512 URI is ~210)
  Ecc ecc = Ecc::M;
};

struct TextSpec {
  TextField field = TextField::serial;
  double x_mm = 0;
  double y_mm = 0;               // top of the text line
  double height_mm = 3.0;        // character height (the font size)
  std::size_t max_chars = 20;    // longest value (after the prefix) the line must hold
  std::string prefix;            // shown before the value, e.g. "S/N "
  std::string value;             // the fixed text, for field = text only
};

struct SecondCodeSpec {
  SecondCodeKind kind = SecondCodeKind::wifi_qr;
  double x_mm = 0;
  double y_mm = 0;
  double size_mm = 15.0;         // side of the square box (quiet zone included)
  std::size_t max_data_bytes = 64;
  Ecc ecc = Ecc::M;              // wifi_qr only
};

struct TemplateSpec {
  std::string name = "default";
  double width_mm = 76.0;   // the built-in default: 3 x 1.25 in
  double height_mm = 32.0;
  int dpi = 203;
  std::string font = "DejaVu Sans Mono";  // previews (PNG/PDF); printers use their font 0
  QrSpec qr;
  std::vector<TextSpec> texts;
  std::optional<SecondCodeSpec> second_code;
};

// A layout resolved to printer dots. A code's box starts at (x, y); the symbol itself starts
// `quiet_modules` modules further in, drawn with `module` dots per module.
struct CodeBox {
  int x = 0, y = 0, box = 0;     // box side in dots
  int module = 0;                // dots per module (ZPL magnification)
  int quiet_modules = 0;         // 4 for QR (ISO/IEC 18004 §6.3.8), 1 for DataMatrix
  int max_modules = 0;           // symbol side for the longest allowed data
};
struct TextBox {
  int x = 0, y = 0;
  int height = 0;                // character height in dots
  int char_width = 0;            // character cell width in dots (monospaced metric)
  int width = 0;                 // reserved width: (prefix + max_chars) cells
};

// A validated template. Construction checks everything that could make a label wrong at
// print time and throws station::Error(Errc::config_error) naming the template, the key and
// the fix: unsupported dpi, elements outside the label or overlapping each other, a QR box
// too small for max_data_bytes at a printable module size, text that does not fit.
class Template {
 public:
  explicit Template(TemplateSpec spec);

  const TemplateSpec& spec() const noexcept { return spec_; }
  const std::string& name() const noexcept { return spec_.name; }
  int dpi() const noexcept { return spec_.dpi; }
  int width_dots() const noexcept { return width_dots_; }
  int height_dots() const noexcept { return height_dots_; }
  const CodeBox& qr() const noexcept { return qr_; }
  const std::vector<TextBox>& text_boxes() const noexcept { return texts_; }  // parallel to spec().texts
  const std::optional<CodeBox>& second_code() const noexcept { return second_; }

  // The same layout for another printer resolution (re-validated: a box that holds the
  // code at 300 dpi may not at 203).
  Template with_dpi(int dpi) const;

  // mm -> dots at this template's resolution.
  int dots(double mm) const noexcept;

 private:
  TemplateSpec spec_;
  int width_dots_ = 0, height_dots_ = 0;
  CodeBox qr_;
  std::vector<TextBox> texts_;
  std::optional<CodeBox> second_;
};

// The built-in templates: "default" (70 x 32 mm, QR left, serial/MAC/model/date/batch/fixture
// right) and "softap" (the same plus the SoftAP credentials as a WIFI: QR). Throws
// Error(not_found) for other names.
TemplateSpec builtin_template_spec(std::string_view name);
Template builtin_template(std::string_view name = "default");
std::vector<std::string> builtin_template_names();

std::string_view to_string(Ecc e) noexcept;
std::string_view to_string(TextField f) noexcept;
std::string_view to_string(SecondCodeKind k) noexcept;

}  // namespace station::labels
