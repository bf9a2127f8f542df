// Previews drawn with cairo from the same resolved layout the ZPL uses: a PNG with one pixel
// per printer dot (1 bit deep, as the print head sees it), and a PDF at the label's true size.
#include <cairo-pdf.h>
#include <cairo.h>
#include <fontconfig/fontconfig.h>
#include <png.h>

#include <cstdlib>
#include <mutex>

#include <array>
#include <cmath>
#include <csetjmp>
#include <cstring>
#include <string>

#include "common/error.hpp"
#include "internal/content.hpp"
#include "internal/handles.hpp"
#include "labels/qr.hpp"
#include "labels/render.hpp"

namespace station::labels {
namespace {

using internal::CairoPtr;
using internal::SurfacePtr;

void check_cairo(cairo_status_t st, const char* what) {
  if (st != CAIRO_STATUS_SUCCESS) {
    throw Error(Errc::internal, std::string("cairo: ") + what + ": " + ::cairo_status_to_string(st),
                static_cast<std::int64_t>(st));
  }
}

void draw_matrix(cairo_t* cr, const CodeBox& b, const Matrix& m) {
  const double off = b.quiet_modules * b.module;
  const double mod = b.module;
  for (int y = 0; y < m.height; ++y) {
    for (int x = 0; x < m.width; ++x) {
      if (m.at(x, y)) ::cairo_rectangle(cr, b.x + off + x * mod, b.y + off + y * mod, mod, mod);
    }
  }
  ::cairo_fill(cr);
}

#if defined(__SANITIZE_ADDRESS__)
// Under LeakSanitizer, hand cairo's and fontconfig's process-wide caches back at exit, so
// their one-time allocations are not reported as leaks (cairo's documented debug hook).
void release_font_caches_at_exit() {
  static std::once_flag once;
  std::call_once(once, [] {
    std::atexit([] {
      ::cairo_debug_reset_static_data();
      ::FcFini();
    });
  });
}
#else
void release_font_caches_at_exit() {}
#endif

// Draws one label in printer dots (the caller scales for PDF).
void draw_label(cairo_t* cr, const Template& tpl, const LabelData& data) {
  internal::check_qr_data(tpl, data.uri);
  release_font_caches_at_exit();
  const Matrix qr = encode_qr(data.uri, tpl.spec().qr.ecc);
  std::string second;
  Matrix second_matrix;
  if (tpl.second_code()) {
    second = internal::second_code_data(tpl, data);
    second_matrix = tpl.spec().second_code->kind == SecondCodeKind::wifi_qr
                        ? encode_qr(second, tpl.spec().second_code->ecc)
                        : encode_datamatrix(second);
    if (second_matrix.width > tpl.second_code()->max_modules) {
      throw Error(Errc::invalid_argument, "label for template '" + tpl.name() +
                                              "': the second code's data needs a larger symbol than the box holds");
    }
  }
  ::cairo_set_source_rgb(cr, 1, 1, 1);
  ::cairo_paint(cr);
  ::cairo_set_source_rgb(cr, 0, 0, 0);
  ::cairo_set_antialias(cr, CAIRO_ANTIALIAS_NONE);  // modules sit on whole dots
  draw_matrix(cr, tpl.qr(), qr);
  if (tpl.second_code()) draw_matrix(cr, *tpl.second_code(), second_matrix);

  ::cairo_set_antialias(cr, CAIRO_ANTIALIAS_DEFAULT);
  ::cairo_select_font_face(cr, tpl.spec().font.c_str(), CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
  std::array<char, 17> scratch{};
  for (std::size_t i = 0; i < tpl.text_boxes().size(); ++i) {
    const std::string_view v = internal::text_value(tpl, i, data, scratch);
    if (v.empty()) continue;
    const TextBox& b = tpl.text_boxes()[i];
    const std::string line = tpl.spec().texts[i].prefix + std::string(v);
    // Size the font so ascent + descent fill the line's height, then make sure the advance
    // stays inside the reserved cells (a font narrower than the metric is fine, wider is not).
    ::cairo_set_font_size(cr, b.height);
    cairo_font_extents_t fe;
    ::cairo_font_extents(cr, &fe);
    double size = b.height * b.height / (fe.ascent + fe.descent);
    ::cairo_set_font_size(cr, size);
    cairo_text_extents_t te;
    ::cairo_text_extents(cr, line.c_str(), &te);
    if (te.x_advance > b.width) {
      size *= b.width / te.x_advance;
      ::cairo_set_font_size(cr, size);
    }
    ::cairo_font_extents(cr, &fe);
    ::cairo_move_to(cr, b.x, b.y + fe.ascent);
    ::cairo_show_text(cr, line.c_str());
  }
  check_cairo(::cairo_status(cr), "drawing the label");
}

// libpng writes into a byte vector; errors longjmp back to write_png.
void png_append(png_structp png, png_bytep data, png_size_t n) {
  auto* out = static_cast<Bytes*>(::png_get_io_ptr(png));
  out->insert(out->end(), data, data + n);
}
void png_flush(png_structp) {}

struct PngJob {
  Bytes* out;
  const unsigned char* rgb;  // cairo RGB24: one native-endian 32-bit word per dot
  int stride;                // bytes per row of `rgb`
  int width, height, dpi;
  png_byte* row;             // (width + 7) / 8 bytes of scratch
};

// libpng reports errors by longjmp: keep this frame free of C++ objects (-Wclobbered).
bool write_png_rows(png_structp png, png_infop info, const PngJob& job) {
  if (setjmp(png_jmpbuf(png))) return false;
  ::png_set_write_fn(png, job.out, png_append, png_flush);
  ::png_set_IHDR(png, info, static_cast<png_uint_32>(job.width), static_cast<png_uint_32>(job.height), 1,
                 PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  // pHYs: the printer's resolution, so viewers and tools know the true size.
  const auto ppm = static_cast<png_uint_32>(std::lround(job.dpi / 0.0254));
  ::png_set_pHYs(png, info, ppm, ppm, PNG_RESOLUTION_METER);
  // Row filters do nothing for 1-bit art but cost a trial compression each: skip them.
  ::png_set_filter(png, PNG_FILTER_TYPE_BASE, PNG_FILTER_NONE);
  ::png_write_info(png, info);
  for (int y = 0; y < job.height; ++y) {
    std::uint32_t src_word = 0;
    const unsigned char* src = job.rgb + static_cast<std::ptrdiff_t>(y) * job.stride;
    for (int x0 = 0; x0 < job.width; x0 += 8) {
      // Gray 1-bit PNG: 0 is black, 1 white. A dot is black when it is more than half inked
      // (the blue channel of a gray pixel is its level).
      unsigned bits = 0;
      for (int k = 0; k < 8; ++k) {
        bits <<= 1;
        if (x0 + k < job.width) {
          std::memcpy(&src_word, src + static_cast<std::ptrdiff_t>(x0 + k) * 4, 4);
          bits |= (src_word & 0xffU) >= 128 ? 1U : 0U;
        }
      }
      job.row[x0 / 8] = static_cast<png_byte>(bits);
    }
    ::png_write_row(png, job.row);
  }
  ::png_write_end(png, nullptr);
  return true;
}

Bytes write_png_1bit(const unsigned char* rgb, int stride, int width, int height, int dpi) {
  Bytes out;
  std::vector<png_byte> row(static_cast<std::size_t>((width + 7) / 8));
  png_structp png = ::png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  if (png == nullptr) throw Error(Errc::internal, "libpng: png_create_write_struct failed");
  png_infop info = ::png_create_info_struct(png);
  const bool ok = info != nullptr && write_png_rows(png, info, PngJob{&out, rgb, stride, width, height, dpi, row.data()});
  ::png_destroy_write_struct(&png, &info);
  if (!ok) throw Error(Errc::internal, "libpng: writing the PNG failed");
  return out;
}

cairo_status_t pdf_append(void* closure, const unsigned char* data, unsigned int n) {
  auto* out = static_cast<Bytes*>(closure);
  out->insert(out->end(), data, data + n);
  return CAIRO_STATUS_SUCCESS;
}

}  // namespace

Bytes render_png(const Template& tpl, const LabelData& data) {
  // Draw in RGB24 (the renderer paints a white background) and keep one channel as gray.
  SurfacePtr rgb(::cairo_image_surface_create(CAIRO_FORMAT_RGB24, tpl.width_dots(), tpl.height_dots()));
  check_cairo(::cairo_surface_status(rgb.get()), "creating the image");
  {
    CairoPtr cr(::cairo_create(rgb.get()));
    draw_label(cr.get(), tpl, data);
  }
  ::cairo_surface_flush(rgb.get());
  return write_png_1bit(::cairo_image_surface_get_data(rgb.get()), ::cairo_image_surface_get_stride(rgb.get()),
                        tpl.width_dots(), tpl.height_dots(), tpl.dpi());
}

Bytes render_pdf(const Template& tpl, std::span<const LabelData> labels) {
  if (labels.empty()) throw Error(Errc::invalid_argument, "a PDF needs at least one label");
  Bytes out;
  constexpr double kPointsPerInch = 72.0;
  const double w_pt = tpl.spec().width_mm / 25.4 * kPointsPerInch;
  const double h_pt = tpl.spec().height_mm / 25.4 * kPointsPerInch;
  SurfacePtr surface(::cairo_pdf_surface_create_for_stream(pdf_append, &out, w_pt, h_pt));
  check_cairo(::cairo_surface_status(surface.get()), "creating the PDF");
  {
    CairoPtr cr(::cairo_create(surface.get()));
    // Draw in printer dots: the PDF shows exactly what the printer prints, at true size.
    ::cairo_scale(cr.get(), kPointsPerInch / tpl.dpi(), kPointsPerInch / tpl.dpi());
    for (const LabelData& d : labels) {
      draw_label(cr.get(), tpl, d);
      ::cairo_show_page(cr.get());
    }
    check_cairo(::cairo_status(cr.get()), "drawing the PDF");
  }
  ::cairo_surface_finish(surface.get());
  check_cairo(::cairo_surface_status(surface.get()), "finishing the PDF");
  return out;
}

}  // namespace station::labels
