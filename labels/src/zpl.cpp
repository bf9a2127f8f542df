// ZPL II output (ZPL II Programming Guide: ^XA/^XZ format, ^CI28 UTF-8, ^PW/^LL label size,
// ^FO field origin, ^BQ QR code, ^BX DataMatrix, ^A0 scalable font, ^FH hex escapes).
#include <array>
#include <cstdio>
#include <string>

#include "common/error.hpp"
#include "internal/content.hpp"
#include "labels/render.hpp"

namespace station::labels {
namespace {

// 1 where a byte must be written as _XX after ^FH: the format/control prefixes ^ and ~ (a ~
// command is acted on the moment the printer sees it, even inside field data), the ^FH
// indicator _ itself, control characters, DEL, and everything outside ASCII (under ^CI28
// the escaped bytes are read as UTF-8 again, so text survives).
constexpr std::array<bool, 256> make_escape_table() {
  std::array<bool, 256> t{};
  for (int c = 0; c < 256; ++c) t[static_cast<std::size_t>(c)] = c < 0x20 || c >= 0x7f;
  t['^'] = t['~'] = t['_'] = true;
  return t;
}
constexpr auto kEscape = make_escape_table();

std::string dots_pair(int x, int y) { return std::to_string(x) + "," + std::to_string(y); }

void append_count4(std::size_t n, std::string& out) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04zu", n);
  out.append(buf, 4);
}

std::string qr_head(const CodeBox& b, Ecc ecc) {
  // The symbol starts inside its quiet zone. ^BQN,2,m: normal orientation, model 2,
  // magnification m dots per module. Data: <ECC>M,B<4-digit byte count><bytes> is manual
  // byte mode with an exact count, the only manual mode that carries any byte (a DPP URI has
  // lower case and ';', which alphanumeric mode cannot).
  const int off = b.quiet_modules * b.module;
  return "^FO" + dots_pair(b.x + off, b.y + off) + "^BQN,2," + std::to_string(b.module) + "^FH^FD" +
         std::string(to_string(ecc)) + "M,B";
}

}  // namespace

void zpl_escape_append(std::string_view text, std::string& out) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  // Copy runs of plain bytes in one go: this is the per-device hot path.
  std::size_t run = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (!kEscape[c]) continue;
    out.append(text.data() + run, i - run);
    const char esc[3] = {'_', kHex[c >> 4], kHex[c & 15]};
    out.append(esc, 3);
    run = i + 1;
  }
  out.append(text.data() + run, text.size() - run);
}

std::string zpl_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size() + 8);
  zpl_escape_append(text, out);
  return out;
}

ZplRenderer::ZplRenderer(const Template& tpl) : tpl_(tpl) {
  auto lit = [&](std::string s) {
    if (!parts_.empty() && parts_.back().kind == Part::literal) {
      parts_.back().bytes += s;
    } else {
      parts_.push_back(Part{Part::literal, std::move(s), 0});
    }
  };
  lit("^XA\n^CI28\n^PW" + std::to_string(tpl.width_dots()) + "\n^LL" + std::to_string(tpl.height_dots()) +
      "\n^LH0,0\n");
  lit(qr_head(tpl.qr(), tpl.spec().qr.ecc));
  parts_.push_back(Part{Part::qr, {}, 0});
  lit("^FS\n");
  for (std::size_t i = 0; i < tpl.text_boxes().size(); ++i) {
    const TextBox& b = tpl.text_boxes()[i];
    // ^A0N,h,w: the scalable font at h dots high, w dots per character cell.
    std::string head = "^FO" + dots_pair(b.x, b.y) + "^A0N," + std::to_string(b.height) + "," +
                       std::to_string(b.char_width) + "^FH^FD";
    zpl_escape_append(tpl.spec().texts[i].prefix, head);
    parts_.push_back(Part{Part::text, std::move(head), i});
  }
  if (tpl.second_code()) {
    const CodeBox& b = *tpl.second_code();
    const auto& sc = *tpl.spec().second_code;
    std::string head;
    if (sc.kind == SecondCodeKind::wifi_qr) {
      head = qr_head(b, sc.ecc);
    } else {
      // ^BXN,h,200: ECC 200 with h-dot modules; the printer picks the smallest square symbol.
      const int off = b.quiet_modules * b.module;
      head = "^FO" + dots_pair(b.x + off, b.y + off) + "^BXN," + std::to_string(b.module) + ",200^FH^FD";
    }
    parts_.push_back(Part{Part::second, std::move(head), 0});
  }
  lit("^XZ\n");
}

void ZplRenderer::render(const LabelData& data, std::string& out) const {
  internal::check_qr_data(tpl_, data.uri);
  out.clear();
  std::array<char, 17> scratch{};
  for (const Part& p : parts_) {
    switch (p.kind) {
      case Part::literal:
        out += p.bytes;
        break;
      case Part::qr:
        append_count4(data.uri.size(), out);
        zpl_escape_append(data.uri, out);
        break;
      case Part::text: {
        const std::string_view v = internal::text_value(tpl_, p.index, data, scratch);
        if (v.empty()) break;
        out += p.bytes;
        zpl_escape_append(v, out);
        out += "^FS\n";
        break;
      }
      case Part::second: {
        const std::string payload = internal::second_code_data(tpl_, data);
        out += p.bytes;
        if (tpl_.spec().second_code->kind == SecondCodeKind::wifi_qr) append_count4(payload.size(), out);
        zpl_escape_append(payload, out);
        out += "^FS\n";
        break;
      }
    }
  }
}

std::string ZplRenderer::render(const LabelData& data) const {
  std::string out;
  out.reserve(512);
  render(data, out);
  return out;
}

std::string render_zpl(const Template& tpl, const LabelData& data) { return ZplRenderer(tpl).render(data); }

}  // namespace station::labels
