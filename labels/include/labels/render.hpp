// One layout, three outputs: ZPL II for Zebra-compatible line printers, PNG at the printer's
// resolution (1 bit per dot, like the print head), and PDF (one page per label, true size).
//
// Every renderer first checks the data against the template (a value longer than the
// template allows is Error(invalid_argument) naming the field and the template, never a
// clipped label). ZPL rendering is the per-device hot path: it fills a skeleton prepared when
// the template was built and does no allocation beyond the output string's growth.
#pragma once

#include <span>
#include <string>

#include "common/bytes.hpp"
#include "labels/label.hpp"
#include "labels/template.hpp"

namespace station::labels {

class ZplRenderer {
 public:
  explicit ZplRenderer(const Template& tpl);
  // Replaces `out` with the label's ZPL job (reuse `out` across devices to skip allocations).
  void render(const LabelData& data, std::string& out) const;
  std::string render(const LabelData& data) const;

 private:
  struct Part {
    enum Kind { literal, qr, text, second } kind;
    std::string bytes;      // the literal, or the fixed head of a text/second-code field
    std::size_t index = 0;  // text index for `text`
  };
  Template tpl_;
  std::vector<Part> parts_;
};

std::string render_zpl(const Template& tpl, const LabelData& data);
Bytes render_png(const Template& tpl, const LabelData& data);
// One page per label, each the template's physical size.
Bytes render_pdf(const Template& tpl, std::span<const LabelData> labels);

// ZPL field-data escaping for use after ^FH (default indicator `_`): `^` and `~` (the command
// prefixes), `_` itself, control characters, DEL and every byte >= 0x80 become `_XX`.
std::string zpl_escape(std::string_view text);
void zpl_escape_append(std::string_view text, std::string& out);

}  // namespace station::labels
